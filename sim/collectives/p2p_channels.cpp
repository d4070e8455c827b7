// How many of NCCL's channels carry one point-to-point message (a send/recv, or one peer's share of an
// all-to-all), following NCCL 2.14-2.29 (the smallest part across nodes is 2.23's): ncclTopoComputeP2pChannels
// (src/graph/paths.cc) fixes the channels a peer may use, addP2pToPlan (calcP2pChunkSize before 2.23; src/enqueue.cc)
// splits each message over some of them by its size. A channel is one thread block whose copy loop moves a bounded
// rate (Calibration::p2p_channel_bytes_per_s), so a message on few channels cannot fill an NVLink port: on one H100
// node a 32-64 MiB send moves 80 GB/s on 4 channels, 128 MiB 163 GB/s on 8, 256 MiB 300 GB/s on 16, and from
// 512 MiB the link's rate on 32 (two nccl-tests sendrecv sweeps, NCCL 2.28 and 2.29).
#include <algorithm>
#include <cmath>

#include "sim/collectives.hpp"

namespace moesys::sim {

namespace {

// NCCL's point-to-point channels: its collective channel count rounded up to a power of two. On the NVSwitch
// nodes the presets describe (A100's 12 and H100's 18 NVLinks) that is 32, and a peer on NVLink may use all of
// them (two per NVLink, rounded up to a power of two, at most the channels there are).
constexpr int kP2pChannels = 32;
// A channel keeps its sync warp while it runs at most 4 peers' operations (paths.cc: "avoid overloading channels
// with 8+ operations").
constexpr int kPeersPerChannel = 4;
// NCCL_P2P_NVL_CHUNKSIZE (one node on NVLink), NCCL_P2P_NET_CHUNKSIZE and NCCL_P2P_PCI_CHUNKSIZE (otherwise).
constexpr double kNvlinkChunkBytes = 512.0 * 1024;
constexpr double kOtherChunkBytes = 128.0 * 1024;
// NCCL_NCHANNELS_PER_NET_PEER's default: a network peer starts from 2 channels.
constexpr int kNetPeerChannels = 2;

int pow2_up(int v) {
  int p = 1;
  while (p < v) p *= 2;
  return p;
}

}  // namespace

int P2pChannelRule::channels(double bytes) const {
  if (bytes <= 0) return 1;
  // Start on up to the guaranteed channels, a part no smaller than min_part_bytes; double while a part is larger
  // than max_part_bytes and the peer has channels left.
  int n = static_cast<int>(std::min<double>(min_channels, std::ceil(bytes / min_part_bytes)));
  n = std::max(n, 1);
  double part = std::max(min_part_bytes, std::ceil(bytes / n));
  while (part > max_part_bytes && n <= max_channels / 2) {
    n *= 2;
    part = std::ceil(bytes / n);
  }
  return n;
}

P2pChannelRule p2p_channel_rule(const core::ClusterSpec& spec, int communicator_ranks, int communicator_nodes) {
  const int ranks = std::max(communicator_ranks, 1);
  const bool multi_node = communicator_nodes > 1;
  P2pChannelRule rule;
  // Channels per peer: the fewest any peer gets, so in a communicator across nodes a network peer's, which NVLink
  // peers get too. A network peer gets 2, halved while the communicator's ranks would put more than 4 operations on
  // a channel (1 from 65 ranks on 32 channels), and at least one per NIC its GPU drives (the nodes here give each
  // GPU one). This is NCCL 2.21-2.28's rule (2.28 is the CUDA runtime's); 2.29 sizes a network peer's channels to its
  // NIC's rate instead, at 14 GB/s a channel (4 for 400 Gb/s).
  int per_peer = kP2pChannels;
  if (multi_node) {
    per_peer = kNetPeerChannels;
    while (per_peer * ranks > kP2pChannels * kPeersPerChannel && per_peer > 1) per_peer /= 2;
  }
  rule.max_channels = std::min(pow2_up(per_peer), kP2pChannels);
  // A message is guaranteed as many channels as let every peer have its own.
  rule.min_channels = rule.max_channels;
  while (rule.min_channels * ranks > kP2pChannels && rule.min_channels > 1) rule.min_channels /= 2;
  const bool nvlink = spec.node.intra_node.kind == core::IntraNodeKind::nvswitch;
  const double chunk = !multi_node && nvlink ? kNvlinkChunkBytes : kOtherChunkBytes;
  rule.min_part_bytes = multi_node ? chunk / 2 : chunk / 8;
  rule.max_part_bytes = multi_node ? chunk : chunk * 32;
  return rule;
}

}  // namespace moesys::sim

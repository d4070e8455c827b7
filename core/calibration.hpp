#pragma once
// The hardware model's efficiency and latency parameters: one small table per GPU family, fitted on the published
// measurements of calibration/<family>-measured.json by `moesys calibration --fit`, printed by `moesys
// calibration`, overridable from a file. No other constant in the model may be tuned; everything else comes from
// specifications. The defaults below are the A100 table rounded to three digits; core/calibration_tables.cpp holds
// the others. A parameter no A100 point moves keeps an engineering default, reported as uncalibrated in the README.
#include <algorithm>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace moesys::core {

/// The share of a link's rate a message of `bytes` uses on a ramp of half-bandwidth size `half_bytes`:
/// 1 / (1 + sqrt(half / bytes)), 1 for an empty message. It rises slowly with size, as NCCL's channel and protocol
/// choice makes it.
double ramp_efficiency(double half_bytes, double bytes);

struct Calibration {
  double nvlink_efficiency = 0.780;    // large-transfer fraction of NVLink spec bandwidth
  double pcie_efficiency = 0.824;      // fraction of PCIe spec bandwidth for pinned copies
  /// PCIe duplex contention: host copies in both directions at once (H2D beside D2H) reach together this fraction
  /// of twice the one-direction rate, shared fairly between the directions (ClusterGraph::host_copy_route). The
  /// data read across the link in one direction needs read requests and completions credited in the other; the
  /// measured split between the directions is not fair (README "Calibration"). In [0.5, 1]; 1 is ideal duplex.
  double pcie_duplex_efficiency = 0.703;
  /// Fraction of NVLink spec bandwidth that a copy engine's GPU-to-GPU copy reaches (cudaMemcpyPeerAsync,
  /// nvbandwidth's *_memcpy_*_ce): DMA engines, not NCCL's SM channels (nvlink_efficiency). A100: uncalibrated.
  double ce_nvlink_efficiency = 0.8;
  double nic_efficiency = 0.960;       // fraction of NIC line rate reached by RDMA collectives
  double gemm_efficiency = 0.894;      // fraction of tensor-core peak for large GEMMs (16-bit, tf32, fp32)
  double gemm_fp8_efficiency = 0.936;  // the same for fp8 GEMMs (their own kernels, scaling included)
  /// A GEMM's output tile pays a fixed cost (loading its first operands, writing the result) worth this many
  /// steps of K: a K-deep GEMM reaches K / (K + gemm_tile_overhead_k) of the efficiency. Its tiles run in waves
  /// of one per SM (GpuSpec::sms), so a partial last wave idles the rest; fewer tiles than SMs are split in K,
  /// each slice paying this cost again (sim/compute_model.hpp).
  double gemm_tile_overhead_k = 193;
  /// A large tree all-reduce's transfers reach this fraction of the rate a ring's do. Not fitted: NCCL's tuner rates
  /// a tree's bus bandwidth at 0.92 (0.9 before 2.12) of the ring's on the same channels and applies no correction to it from
  /// 128 MiB up (src/graph/tuning.cc), while the points cannot tell: NCCL keeps the ring at large sizes on the 2
  /// to 4 nodes they span (sim/collectives/select.cpp).
  double tree_efficiency = 0.92;
  /// A tree's transfers ramp on the call's size, not on their messages: tree_efficiency x 1 / (1 + sqrt(this /
  /// bytes)). NCCL's own tuner corrects its trees by 0.4 to 0.9 between 4 KiB and 64 MiB ("trees are not perfectly
  /// sticking to the model for medium sizes", treeCorrectionFactor): a tree's pipeline over the chain and the
  /// depth fills only with enough chunks. 0: the messages' ramp, as a ring's. A100: fitted with the rest held on ALCF
  /// Sophia's all-reduce on 2 DGX A100 nodes (NCCL 2.22), the one A100 table whose middle sizes (64 KiB to 16 MiB)
  /// run as trees; the H100 fits 9.5 MB on its own 2- and 4-node sweeps.
  double tree_half_bandwidth_bytes = 5.53e6;
  /// NCCL gives one send/recv peer a few channels of its own, not all of them: a point-to-point message reaches
  /// this fraction of the rate a collective's transfers do.
  double p2p_efficiency = 0.846;
  /// Host cost of one collective call through a framework (torch.distributed: Python, dispatch, stream
  /// bookkeeping) on top of NCCL's; points measured through one carry it.
  double framework_call_latency_s = 0;
  /// Host time to enqueue one collective on one GPU (NCCL's enqueue and the kernel launch). Programs issue work
  /// ahead of the GPU, so this is hidden there (host_op_s models a host that falls behind); it sets the floor of a
  /// benchmark loop without CUDA graphs, which times max(GPU time, this x the GPUs one thread drives) per call
  /// (nccl-tests' default; with -G the graph replays without it). Fitted on such points only.
  double host_launch_s = 5.21e-6;
  /// Host time to enqueue one point-to-point operation (ncclSend or ncclRecv) of a grouped call, on top of the
  /// call's launch: an all-to-all posts a send and a receive per member on every GPU (nccl-tests' alltoall_perf
  /// includes its own rank), and each is a task NCCL's group end schedules onto channels and the proxy. Like
  /// host_launch_s, hidden where the host runs ahead, and the floor of a benchmark loop without CUDA graphs.
  double host_p2p_op_s = 0.459e-6;
  /// Interference (sim/progress_load.hpp): while a communication operation runs, its kernel holds SMs and HBM
  /// bandwidth that a concurrent kernel of the same GPU runs without. The share it takes is the larger of
  /// comm_kernel_sms / GpuSpec::sms and comm_hbm_traffic x the rate of its links / the usable HBM bandwidth.
  /// SMs a communication kernel holds from its launch to its end, whether data moves or it waits for a peer: one
  /// per channel (thread block). Not fitted: NCCL runs 24 channels for all-reduce on DGX A100 (NVIDIA/nccl#1225,
  /// 2 per NVLink), ncclAllGather launched 24 blocks on H100 (NVIDIA developer forum, "Compute-communication
  /// overlap causes severe GEMM performance degradation"), DeepEP's kernels take 24 SMs by default. 0: none.
  double comm_kernel_sms = 24;
  /// HBM bytes a communication kernel moves per byte its links carry into the GPU: the peer writes it into a
  /// staging buffer (1), the kernel reads it out (1) and writes it to the user's buffer or reads the user's data
  /// that goes with it (1). Not fitted: NCCL's maintainers put it at "at least 2x", 3x with the user data
  /// (NVIDIA/nccl#1428); an all-to-all also reads what it sends (a 4th, not counted). 0: none.
  double comm_hbm_traffic = 3;
  /// The same for a copy-engine collective (CollectiveAlgo::copy_engine): the DMA reads the sender's buffer (1 per
  /// byte out) and writes the receiver's (1 per byte in), no staging buffer; its all-gather and all-to-all send as
  /// much as they receive. It holds no SMs. Not fitted (the copy's own accounting). 0: none.
  double ce_hbm_traffic = 2;
  /// > 0: every communication operation takes this fixed share of its GPU instead (at most 0.5); 0: the share
  /// above. Turning interference off is {"comm_kernel_sms": 0, "comm_hbm_traffic": 0, "ce_hbm_traffic": 0}.
  double comm_sm_share = 0;
  /// 1: a communication kernel (one that holds SMs: not a copy-engine collective) issued while a kernel issued
  /// before it runs on another stream of its GPU starts when that kernel ends. The block scheduler places the blocks
  /// of kernels of one stream priority in the order they reach it, and a kernel that fills the GPU (a GEMM, with
  /// split-K) leaves no SM to the communication kernel's blocks until its own are all placed and retire; CUDA
  /// streams are of one priority unless asked (torch.distributed's NCCL streams are, unless created high-priority).
  /// 0 (the default): communication streams of higher priority, whose kernels take their SMs at once. Seen on real
  /// GPUs: NVIDIA/nccl#1431 (a send/recv kernel behind a long GEMM waits for its end), NVIDIA/TransformerEngine#1522
  /// (a bulk overlap 4x slower with the GEMM launched first).
  double comm_waits_behind_kernels = 0;
  double hbm_efficiency = 0.759;  // fraction of HBM bandwidth for memory-bound kernels (fitted on small-M GEMMs)
  /// Per-step latency of each of NCCL's protocols over NVLink/PCIe (see sim/collectives/protocol.hpp): Simple
  /// (full bandwidth, a fence and flag per step; also one point-to-point message), LL128 and LL (flags inside
  /// the data: lower latency, 120/128 and 1/2 of the bandwidth).
  double step_latency_s = 6.29e-6;
  double ll128_step_latency_s = 2.8e-6;
  double ll_step_latency_s = 0.892e-6;
  /// Added to a step whose message crosses the network (NIC, switch, the peer's NIC), whatever the protocol.
  double net_step_latency_s = 8.78e-6;
  /// NVLink SHARP (NVLS) all-reduce on NVSwitch gen3: the switch reduces, each GPU sends and receives the buffer
  /// once, at this fraction of its (efficiency-scaled) NVLink rate; the call costs nvls_latency_s.
  double nvls_efficiency = 0.75;
  double nvls_latency_s = 20e-6;
  /// A direct all-to-all is grouped point-to-point: every peer on another node adds this to the call (NCCL's proxy
  /// thread posts each network peer's send and receive in turn; NVLink peers' data moves in parallel in the kernel).
  /// A call with network peers also waits one net_step_latency_s for its receivers' buffers (their FIFO posts).
  double alltoall_net_peer_latency_s = 2.73e-6;
  /// Fixed cost of one DeepEP-style low-latency dispatch or combine kernel (CollectiveAlgo::deepep_ll): its
  /// GPU-initiated sends of every (token, expert) copy, the receiver's polling of per-expert flags and the copy out
  /// of its buffer.
  double ep_ll_latency_s = 20e-6;
  /// Fraction of NVLink spec bandwidth that DeepEP-style kernels (CollectiveAlgo::deepep, deepep_ll) reach inside
  /// the node: their loads and stores run on the few SMs the kernel is given (20-24), not NCCL's channels.
  double ep_nvlink_efficiency = 0.8;
  /// On an EFA network (NicSpec::transport) instead of net_step_latency_s and nic_half_bandwidth_bytes. A100: AWS
  /// p4d's, EFA's first generation, fitted on two ring all-reduce sweeps (NCCL 2.7.8 and 2.8.3); the H100's p5
  /// takes 37 us.
  double efa_step_latency_s = 38.4e-6;
  double efa_half_bandwidth_bytes = 4.06e5;
  /// On an EFA network, instead of nic_efficiency: the fraction of line rate NCCL reaches through the
  /// aws-ofi-nccl plugin and EFA's SRD transport (a proxy thread drives the NIC; no GPUDirect RDMA write with
  /// immediate data on the first generation), not through InfiniBand verbs.
  double efa_efficiency = 0.64;
  double half_bandwidth_bytes = 1.13e5;      // message size at which an NVLink/PCIe transfer reaches half its rate
  /// The same for NCCL's point-to-point path (send/receive, all-to-all) inside a node, on each peer's message: it
  /// moves in chunks (512 KiB over NVLink) on a few channels of its own, more as it grows, each chunk handed over with
  /// its own flag, so it reaches its channels' rate only once its chunks fill them, whatever the other peers' messages
  /// do; a ring's steps are pipelined over every channel. 0: half_bandwidth_bytes. H100: fitted with the rest held on
  /// two one-node all-to-all and sendrecv sweeps and pplx-kernels' torch all-to-all. A100: uncalibrated, the H100's
  /// (no A100 table of a current NCCL has all-to-all or sendrecv between 1 and 256 MiB).
  double p2p_half_bandwidth_bytes = 3.64e5;
  /// The most one of NCCL's point-to-point channels moves between two GPUs of a node (bytes/s): a channel is one
  /// thread block copying through a FIFO, and NCCL gives a message a few channels by its size and its
  /// communicator's ranks (sim/collectives/p2p_channels.cpp), so a message moves at most channels x this. 0: no
  /// bound. A100: fitted with the rest held on li-plus's sendrecv sweep of 8 A100s (128 MiB on 8 channels: 111 GB/s);
  /// an A100 pair of Leonardo (NVIDIA/nccl-tests#331, not a preset's topology) moves 55 GB/s on 4, the same rate.
  double p2p_channel_bytes_per_s = 14.5e9;
  double nic_half_bandwidth_bytes = 8.81e4;  // the same for a message that crosses the network
  double kernel_launch_s = 4e-6;             // fixed cost per GPU kernel (uncalibrated)
  /// A copy engine's fixed cost per copy (host copies, GPU-to-GPU copies): its descriptor and the DMA's first reads
  /// across the link. Then it moves at the link's full rate: a DMA has none of NCCL's protocol ramp
  /// (half_bandwidth_bytes). Uncalibrated: no published small-copy point yet.
  double copy_setup_s = 4e-6;
  /// Overhead toggle: host time the rank's program spends issuing one operation (framework dispatch, Python around
  /// the launch). The host runs ahead of the GPU, issuing one operation after another, and an operation starts no
  /// earlier than its issue ends, so a GPU whose kernels are shorter than their issue waits for the host. 0 (every
  /// table's value: uncalibrated) turns it off; docs/training.md shows a study with it on.
  double host_op_s = 0;
  /// Delay from the moment an idle stream's next operation becomes ready (its issue, or the event it waits for)
  /// to its start: a CPU rank's stream worker waking up. Measured on CPU ranks; 0 for GPUs (uncalibrated).
  double stream_wake_s = 0;
  /// The compute stream's wake-up instead, when every compute slot of its node is held as its operation becomes
  /// ready: on CPU ranks that oversubscribe the cores, the woken compute worker waits for a core until another
  /// rank's kernel thread ends its scheduler slice (they have the same priority). Measured; 0 (then stream_wake_s)
  /// on GPUs (uncalibrated).
  double busy_compute_wake_s = 0;
  /// On CPU ranks that oversubscribe the cores, a kernel that waited for a compute slot starts this much after
  /// another rank's kernel released it: its worker, asleep on its ticket, wakes up and gets a core; the slot is
  /// held and idle meanwhile (a GPU hands its execution units over in microseconds). Measured; 0 on GPUs.
  double slot_handoff_s = 0;
  /// Fixed cost of one collective call, paid once before its first step: its members meeting in the call. On CPU
  /// ranks a stream worker's wake-up and MPI's progress, measured; on GPUs NCCL's launch and setup of the call,
  /// fitted where small-size points constrain it.
  double collective_latency_s = 4.47e-6;
  /// On CPU ranks (a node with compute slots), a member waiting for a collective or message polls MPI: it spins for
  /// up to `progress_spin_s` of a core, then sleeps between polls and takes `progress_core_share` of a core until
  /// the operation completes, cores the node's kernels run without (sim/progress_load.hpp). Measured on CPU
  /// ranks; GPUs progress communication on their own engines, so 0 there (uncalibrated).
  double progress_spin_s = 0;
  double progress_core_share = 0;

  /// Fraction of a link's (already efficiency-scaled) rate that messages of `bytes` use: 1 / (1 + sqrt(half / bytes)).
  /// It rises slowly with size, as NCCL's channel and protocol choice makes it; small messages waste link time.
  /// `network`: the message crosses a NIC (its ramp is nic_half_bandwidth_bytes).
  double message_efficiency(double bytes, bool network = false, bool point_to_point = false) const;
  /// What a benchmark loop without CUDA graphs times per call of `gpu_s` GPU time, its host thread launching on
  /// `gpus_per_thread` GPUs (nccl-tests -g), each call posting `p2p_ops` point-to-point operations per GPU: the
  /// longer of the two, since the GPU queues what the host enqueues.
  double launch_loop_time(double gpu_s, int gpus_per_thread = 1, int p2p_ops = 0) const {
    return std::max(gpu_s, (host_launch_s + p2p_ops * host_p2p_op_s) * gpus_per_thread);
  }
  double message_rate(double link_bytes_per_s, double bytes, bool network = false) const {
    return link_bytes_per_s * message_efficiency(bytes, network);
  }
};

/// A table fitted on no data: round engineering values (efficiencies 0.8, latencies of a few microseconds, no
/// per-call or framework cost). Cross-validation fits from it, so that a held-out source cannot leak into the
/// prediction of its own points through a starting value fitted with them.
Calibration prior_calibration();
/// Built-in calibration of the A100 family (the numbers above, derived in README "Calibration").
Calibration default_calibration();
/// The GPU families the model has a fitted table for (calibration/<family>-measured.json): a100, h100 (H100 and
/// H800, the same chip), h200.
const std::vector<std::string>& gpu_families();
/// The family of a GPU model name ("A100-SXM4-80GB" -> a100, "H800-SXM5-80GB" -> h100); "" when none matches.
std::string gpu_family_of(const std::string& gpu_model);
/// The fitted table of a family; an unknown family (a measured CPU machine, a GPU without published points) gets
/// the A100 table.
Calibration default_calibration_for(const std::string& family);
/// A family whose table starts from another's (h200 from h100: the same interconnect), with the parameters its own
/// points refit; {"", {}} for a family fitted whole. Cross-validation follows the same recipe.
struct FamilyRecipe {
  std::string base_family;
  std::vector<std::string> own_parameters;
};
FamilyRecipe family_recipe(const std::string& family);
/// The parameters a cluster's network uses: on an EFA network, the EFA latency and ramp replace the RDMA ones.
Calibration for_network(Calibration cal, bool efa);
/// Reads {"nvlink_efficiency": ..., ...} over `base`; unknown keys or values out of (0, 1] for efficiencies are
/// ConfigErrors.
Calibration parse_calibration(const nlohmann::json& j, const std::string& file,
                              const Calibration& base = default_calibration());
nlohmann::json calibration_to_json(const Calibration& c);

}  // namespace moesys::core

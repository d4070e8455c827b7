// The machine's compute slots (exec/cpu/compute_slots.hpp): however many ranks compete, at most `slots` kernels
// hold one at a time, every rank gets its turns, a kernel's place is the moment its ticket was taken (not when its
// thread gets around to waiting), and a machine without slots leaves kernels alone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "exec/cpu/compute_slots.hpp"

namespace moesys::exec::cpu {
namespace {

// A counter in memory that every rank of this machine maps: how many ranks are inside a slot right now.
class SharedCounter {
 public:
  SharedCounter() {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    long creator = rank == 0 ? static_cast<long>(::getpid()) : 0;
    MPI_Bcast(&creator, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    name_ = "/moesys-test-inside-" + std::to_string(creator);
    if (rank == 0) {
      const int fd = ::shm_open(name_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
      EXPECT_EQ(::ftruncate(fd, sizeof(std::atomic<int>)), 0);
      ::close(fd);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const int fd = ::shm_open(name_.c_str(), O_RDWR, 0600);
    void* p = ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    value_ = static_cast<std::atomic<int>*>(p);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  ~SharedCounter() {
    MPI_Barrier(MPI_COMM_WORLD);
    ::munmap(value_, sizeof(std::atomic<int>));
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) ::shm_unlink(name_.c_str());
  }
  std::atomic<int>& operator*() { return *value_; }

 private:
  std::string name_;
  std::atomic<int>* value_ = nullptr;
};

// Each rank enters `turns` times for 1 ms; returns the most ranks this rank saw inside at once, over all ranks.
int most_inside_at_once(const ComputeSlots& slots, SharedCounter& inside, int turns) {
  int most = 0;
  for (int t = 0; t < turns; ++t) {
    ComputeSlots::Ticket held(slots);
    held.await_turn();
    most = std::max(most, ++*inside);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    --*inside;
  }
  int all = 0;
  MPI_Allreduce(&most, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return all;
}

TEST(ComputeSlotsAcrossRanks, AtMostSlotsKernelsHoldOneAtOnce) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  SharedCounter inside;
  for (int slots : {1, 2}) {
    const ComputeSlots machine(slots, 30.0);
    const int most = most_inside_at_once(machine, inside, 20);
    EXPECT_LE(most, slots) << "with " << slots << " slot(s)";
    EXPECT_GE(most, 1);
  }
  // Without slots the ranks are not held back: sleeping 1 ms each, they overlap (all of them almost surely, at
  // least two for certain over 20 turns unless the machine serialises processes).
  const ComputeSlots none(0, 30.0);
  const int most = most_inside_at_once(none, inside, 20);
  if (size > 1) {
    EXPECT_GT(most, 1);
  }
}

TEST(ComputeSlotsAcrossRanks, EveryRankGetsItsTurns) {
  // One slot, every rank asking as fast as it can: tickets serve them in order, so no rank runs all its turns
  // before another has had one (a counting semaphore lets the releasing rank take the slot straight back).
  int size = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  SharedCounter finished_turns;
  const ComputeSlots machine(1, 30.0);
  constexpr int kTurns = 50;
  int others_before_my_last = 0;
  for (int t = 0; t < kTurns; ++t) {
    ComputeSlots::Ticket held(machine);
    held.await_turn();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // long beside the ranks' start-up skew
    const int done = ++*finished_turns;
    if (t == kTurns - 1) others_before_my_last = done - kTurns;
  }
  // By its last turn every rank has seen the others take most of theirs.
  EXPECT_GE(others_before_my_last, (size - 1) * kTurns / 2) << "rank " << rank;
}

TEST(ComputeSlotsAcrossRanks, TheSlotsAccountForEveryRanksKernels) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const ComputeSlots machine(1, 30.0);
  constexpr int kTurns = 10;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int t = 0; t < kTurns; ++t) {
    ComputeSlots::Ticket held(machine);
    held.await_turn();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const ComputeSlots::Stats s = machine.stats();
  EXPECT_EQ(s.kernels, std::uint64_t(size * kTurns));
  EXPECT_GE(s.held_s, 0.9e-3 * size * kTurns);  // one slot: the kernels held it one after the other
  if (size > 1) {
    EXPECT_GT(s.queued, 0u) << "ranks asking together for one slot queue behind each other";
  }
  // Each kernel held the one slot about 1 ms; between two of them it was free with a kernel waiting (a handoff),
  // far less than the kernels held it.
  EXPECT_LT(s.stalled_s, s.held_s);
  EXPECT_EQ(ComputeSlots(0, 30.0).stats().kernels, 0u);  // no slots, no accounts
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(ComputeSlotsAcrossRanks, AKernelKeepsThePlaceItTookWhenItBecameReady) {
  // A ticket taken early (the kernel became ready) holds back one that asks later, even if the later one's thread
  // waits first; a ticket dropped unrun (a skipped operation) holds back nobody.
  const ComputeSlots machine(1, 30.0);
  std::atomic<bool> late_ran{false};
  {
    auto early = std::make_unique<ComputeSlots::Ticket>(machine);
    early->take();
    std::atomic<bool> late_queued{false};
    std::thread late_kernel([&] {
      ComputeSlots::Ticket late(machine);
      late.take();
      late_queued = true;
      late.await_turn();
      late_ran = true;
    });
    while (!late_queued) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // time enough for it to run if it could
    EXPECT_FALSE(late_ran.load()) << "a ticket taken later ran before the early one";
    early->await_turn();
    early.reset();  // the kernel ended: its slot goes to the next ticket
    late_kernel.join();
  }
  EXPECT_TRUE(late_ran.load());
  // Every rank is done with the first case before any drops a ticket unrun: an unrun ticket counts as a finished
  // kernel, which would let a later ticket overtake an earlier one still waiting for its owner.
  MPI_Barrier(MPI_COMM_WORLD);
  {
    auto skipped = std::make_unique<ComputeSlots::Ticket>(machine);
    skipped->take();
    ComputeSlots::Ticket next(machine);
    next.take();
    skipped.reset();
    next.await_turn();  // would time out (RuntimeFailure) if the unrun ticket kept its slot
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace moesys::exec::cpu

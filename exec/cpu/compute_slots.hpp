#pragma once
// The cores of one machine as slots that kernels take whole, in the order they ask, shared by every rank on the
// machine.
//
// Ranks that oversubscribe the cores (4 ranks on 2 cores in CI) would otherwise leave their kernels to the
// operating system's time slices: a kernel stops halfway for another rank's, the ranks drift apart by a slice,
// and a collective waits for whichever member the scheduler served last. A GPU runs kernels on its execution
// units until they finish; so does this machine with slots: a kernel takes a ticket, runs once its ticket is
// among the first `slots` not yet finished, and then lets the next ticket run. Tickets keep the order fair: a
// counting semaphore lets the rank that releases a slot take it straight back for its next kernel, so one rank
// runs ahead while the others' collectives wait for it. The simulator models the same slots
// (NodeSpec::compute_slots: kernels take a slot whole, in arrival order).
#include <atomic>
#include <cstdint>
#include <string>

namespace moesys::exec::cpu {

class ComputeSlots {
 public:
  /// Collective over MPI_COMM_WORLD: the ranks on each machine map one shared ticket counter. `slots` <= 0
  /// leaves kernels to the operating system (no slots).
  ComputeSlots(int slots, double timeout_s);
  ~ComputeSlots();
  ComputeSlots(const ComputeSlots&) = delete;
  ComputeSlots& operator=(const ComputeSlots&) = delete;

  /// A kernel's place in the machine's queue. A GPU queues a kernel for its execution units when the kernel
  /// becomes ready (its stream reached it, its dependencies completed), whether or not any host thread runs at
  /// that moment; so does a ticket taken by whichever thread makes the kernel ready (take()). Taking it only once
  /// the kernel's worker runs left a worker woken while other ranks' kernels held the cores out of the queue:
  /// the rank that released a slot took it straight back for its next kernel, and the woken worker, having
  /// computed the most, waited several scheduler slices for a core (5 ms after an all-to-all, measured), while
  /// the other ranks' collectives waited for it.
  class Ticket {
   public:
    explicit Ticket(const ComputeSlots& slots) : slots_(slots.shared_ ? &slots : nullptr) {}
    /// Releases the slot: after the kernel ran, or unrun (a skipped operation: once its turn has come, so that it
    /// neither holds back later tickets nor lets one overtake an earlier ticket).
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    /// Joins the queue; a second call does nothing.
    void take();
    /// Takes a ticket if none yet, then blocks until its turn; throws core::RuntimeFailure if the turn does not
    /// come within the timeout.
    void await_turn();

   private:
    /// Blocks until its turn; false past the timeout.
    bool wait_for_turn();
    const ComputeSlots* slots_;
    bool taken_ = false, running_ = false;
    std::uint32_t ticket_ = 0;
  };

  int slots() const { return slots_; }

  /// What the machine's slots did since they were created, over every rank of the machine.
  struct Stats {
    std::uint64_t kernels = 0;  // kernels that ran
    std::uint64_t queued = 0;   // of which became ready while every slot was held or promised to an earlier one
    double held_s = 0;          // slot-seconds held by running kernels
    double stalled_s = 0;       // slot-seconds free while a ready kernel waited for its worker to take it
  };
  Stats stats() const;

 private:
  struct Shared {                       // in memory shared by the machine's ranks
    std::atomic<std::uint64_t> tickets;   // tickets handed out
    std::atomic<std::uint32_t> finished;  // kernels finished (wraps; compared modulo 2^32); the futex word
    // The accounting behind stats(), under a spin lock held for a few instructions.
    std::atomic<std::uint32_t> lock;
    std::int32_t running, waiting;  // kernels running; tickets taken, not yet running
    std::int64_t changed_ns;        // when running or waiting last changed
    std::uint64_t kernels, queued;
    std::int64_t held_ns, stalled_ns;
  };
  /// Adds the time since the last change to the accounts, then applies the change.
  static void account(Shared& s, int slots, int running, int waiting);
  int slots_ = 0;
  double timeout_s_ = 0;
  Shared* shared_ = nullptr;
};

/// Cores of this machine divided by the BLAS threads one kernel uses: the kernels that run at once at full rate.
int default_compute_slots();

}  // namespace moesys::exec::cpu

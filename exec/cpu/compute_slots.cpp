#include "exec/cpu/compute_slots.hpp"

#include <cblas.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <mpi.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <new>
#include <thread>

#include "core/error.hpp"
#include "exec/cpu/mpi_comms.hpp"

namespace moesys::exec::cpu {

static_assert(std::atomic<std::uint32_t>::is_always_lock_free && std::atomic<std::uint64_t>::is_always_lock_free,
              "the ticket counters live in shared memory and must be lock-free");

int default_compute_slots() {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, openblas_get_num_threads()));
}

ComputeSlots::ComputeSlots(int slots, double timeout_s) : slots_(slots), timeout_s_(timeout_s) {
  if (slots_ <= 0) return;
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 0;
  MPI_Comm_rank(node, &local);
  auto barrier = [&](const char* what) {
    MPI_Request b = MPI_REQUEST_NULL;
    MPI_Ibarrier(node, &b);
    await_requests(&b, 1, timeout_s_, what);
  };
  // The machine's first rank names the shared memory after its process id (unique on the machine while it runs),
  // creates it, and removes the name once every rank of the machine has mapped it: nothing outlives the job.
  long creator = local == 0 ? static_cast<long>(::getpid()) : 0;
  MPI_Request r = MPI_REQUEST_NULL;
  MPI_Ibcast(&creator, 1, MPI_LONG, 0, node, &r);
  await_requests(&r, 1, timeout_s_, "sharing the compute slots' name");
  const std::string name = "/moesys-slots-" + std::to_string(creator);
  auto map = [&](int flags) -> Shared* {
    const int fd = ::shm_open(name.c_str(), flags, 0600);
    if (fd < 0) return nullptr;
    void* p = (flags & O_CREAT) && ::ftruncate(fd, sizeof(Shared)) != 0
                  ? MAP_FAILED
                  : ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    return p == MAP_FAILED ? nullptr : static_cast<Shared*>(p);
  };
  if (local == 0) {
    ::shm_unlink(name.c_str());  // a stale one from a process that had this id and died
    if ((shared_ = map(O_RDWR | O_CREAT | O_EXCL))) new (shared_) Shared{};
  }
  barrier("creating the compute slots");
  if (local != 0) shared_ = map(O_RDWR);
  int ok = shared_ ? 1 : 0, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, node);
  if (local == 0) ::shm_unlink(name.c_str());
  MPI_Comm_free(&node);
  if (!all_ok) {
    if (shared_) ::munmap(shared_, sizeof(Shared));
    shared_ = nullptr;
    throw core::RuntimeFailure("cannot share the machine's compute slots (POSIX shared memory " + name +
                               "): is /dev/shm mounted and writable?");
  }
}

ComputeSlots::~ComputeSlots() {
  if (shared_) ::munmap(shared_, sizeof(Shared));
}

namespace {
std::int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();  // CLOCK_MONOTONIC: one clock for every process of the machine
}

// The accounts' spin lock, held for a few instructions. Its holder may lose its core (4 ranks on 2 cores), so a
// waiter yields after a short spin instead of burning the holder's time slice.
void lock_accounts(std::atomic<std::uint32_t>& lock) {
  for (int spins = 0; lock.exchange(1, std::memory_order_acquire); ++spins)
    if (spins > 64) std::this_thread::yield();
}
}  // namespace

void ComputeSlots::account(Shared& s, int slots, int running, int waiting) {
  lock_accounts(s.lock);
  const std::int64_t now = monotonic_ns();
  if (s.changed_ns != 0) {
    const std::int64_t dt = now - s.changed_ns;
    s.held_ns += s.running * dt;
    s.stalled_ns += std::max(0, std::min(slots - s.running, s.waiting)) * dt;
  }
  s.changed_ns = now;
  if (waiting > 0 && s.running + s.waiting >= slots) ++s.queued;  // a ticket taken behind every slot
  s.running += running, s.waiting += waiting;
  if (running > 0) ++s.kernels;
  s.lock.store(0, std::memory_order_release);
}

ComputeSlots::Stats ComputeSlots::stats() const {
  if (!shared_) return {};
  account(*shared_, slots_, 0, 0);  // brings the accounts up to now
  lock_accounts(shared_->lock);
  const Stats out{shared_->kernels, shared_->queued, 1e-9 * double(shared_->held_ns), 1e-9 * double(shared_->stalled_ns)};
  shared_->lock.store(0, std::memory_order_release);
  return out;
}

void ComputeSlots::Ticket::take() {
  if (!slots_ || taken_) return;
  ticket_ = static_cast<std::uint32_t>(slots_->shared_->tickets.fetch_add(1));
  taken_ = true;
  account(*slots_->shared_, slots_->slots_, 0, 1);
}

bool ComputeSlots::Ticket::wait_for_turn() {
  Shared& s = *slots_->shared_;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(slots_->timeout_s_);
  for (;;) {
    const std::uint32_t finished = s.finished.load(std::memory_order_acquire);
    // Its turn once fewer than `slots` kernels ahead of it are unfinished: ticket < finished + slots. Kernels count
    // as finished whatever their ticket, so a later ticket may finish while an earlier one is still waking up; the
    // difference is then negative (compared signed, as the counters wrap), and the ticket is overdue. Either way
    // at most `slots` kernels run at once.
    if (static_cast<std::int32_t>(ticket_ - finished) < slots_->slots_) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    const timespec tick{0, 50'000'000};  // recheck the deadline now and then
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&s.finished), FUTEX_WAIT, finished, &tick, nullptr, 0);
  }
}

void ComputeSlots::Ticket::await_turn() {
  if (!slots_) return;
  take();
  if (wait_for_turn()) {
    account(*slots_->shared_, slots_->slots_, 1, -1);
    running_ = true;
    return;
  }
  const int timeout_s = static_cast<int>(slots_->timeout_s_);
  account(*slots_->shared_, slots_->slots_, 0, -1);
  slots_ = nullptr;  // a ticket that never ran: the job ends with this error
  throw core::RuntimeFailure("no compute slot freed within " + std::to_string(timeout_s) +
                             " s: a rank on this machine holds one and does not return it");
}

ComputeSlots::Ticket::~Ticket() {
  if (!slots_ || !taken_) return;
  Shared& s = *slots_->shared_;
  // A ticket dropped unrun (its operation skipped after a failure) still waits for its turn before it counts as
  // finished: counted earlier, it would let a later ticket run beside the one still ahead of it. Past the
  // deadline it counts anyway (the job is failing).
  if (!running_) (void)wait_for_turn();
  account(s, slots_->slots_, running_ ? -1 : 0, running_ ? 0 : -1);
  s.finished.fetch_add(1, std::memory_order_release);
  // Every waiter rechecks its ticket; the next ones in order proceed.
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&s.finished), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

}  // namespace moesys::exec::cpu

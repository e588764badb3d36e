// Shared (not private) futex waits and wake-ups on a 32-bit word in memory that several
// processes map (the shared-memory rings and the shared-memory collective), and the
// bounded spin that comes before a sleep on the hot path.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <thread>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace cafex {

/// Sleeps while `*word == seen`, at most `timeout` (returns at once for 0 or less).
inline void futex_wait(const std::atomic<uint32_t>* word, uint32_t seen,
                       std::chrono::microseconds timeout) {
  if (timeout.count() <= 0)
    return;
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000);
  ts.tv_nsec = static_cast<long>((timeout.count() % 1000000) * 1000);
  syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr,
          0);
}

/// Wakes every sleeper on `word`.
inline void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr,
          0);
}

/// A sleep on `word` that a waker can see: `waiters` counts the sleepers, so that
/// bump_and_wake() makes the system call only when someone sleeps.
inline void counted_wait(const std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiters,
                         uint32_t seen, std::chrono::microseconds timeout) {
  waiters->fetch_add(1, std::memory_order_seq_cst);
  futex_wait(word, seen, timeout); // rechecks *word == seen in the kernel
  waiters->fetch_sub(1, std::memory_order_seq_cst);
}

/// Bumps `word` and wakes its sleepers, if counted_wait() registered any. The bump comes
/// before the load of `waiters` in one total order: a sleeper that registers after the
/// load sees the new value in its futex check and does not sleep.
inline void bump_and_wake(std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiters) {
  word->fetch_add(1, std::memory_order_seq_cst);
  if (waiters->load(std::memory_order_seq_cst) != 0)
    futex_wake(word);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// How long spin_until() spins flat out; past this it yields its core each time it reads
/// the clock, so a long spin takes no time from a runnable thread that needs the core.
inline constexpr std::chrono::microseconds eager_spin{1000};

/// Spins until `ready()` or `budget` has passed; true when ready. A zero budget checks
/// once. The clock is read every 64 turns. No PAUSE in this loop: on a KVM guest a long
/// PAUSE loop trips pause-loop exiting, which takes the vCPU away from the spinner (a
/// 20 ms spin with PAUSE gave a 1x1 step p50 of 66 us on the 2-core VM, without 10 us).
/// After eager_spin it calls sched_yield() at each clock read instead: that returns at
/// once where nothing else waits for the core, and lets another process run where one
/// does (vLLM's shared-memory MessageQueue spins the same way).
template <class Ready>
bool spin_until(Ready&& ready, std::chrono::microseconds budget) {
  if (ready())
    return true;
  if (budget.count() <= 0)
    return false;
  auto start = std::chrono::steady_clock::now();
  auto until = start + budget;
  auto eager_until = start + eager_spin;
  for (unsigned turn = 1;; ++turn) {
    std::atomic_signal_fence(std::memory_order_seq_cst); // a fresh load each turn
    if (ready())
      return true;
    if (turn % 64 == 0) {
      auto now = std::chrono::steady_clock::now();
      if (now >= until)
        return false;
      if (now >= eager_until)
        sched_yield();
    }
  }
}

/// How long a hot-path reader may spin before it sleeps: only while every process of the
/// hot path can have a core of its own (`processes` of them), else a spinner takes the
/// core from the peer it waits for.
inline std::chrono::microseconds spin_budget(int processes, std::chrono::microseconds want) {
  auto cores = static_cast<int>(std::thread::hardware_concurrency());
  return processes <= cores ? want : std::chrono::microseconds{0};
}

} // namespace cafex

// Shared (not private) futex waits and wake-ups on a 32-bit word in memory that several
// processes map (the shared-memory rings and the shared-memory collective).
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <linux/futex.h>
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

} // namespace cafex

// What /proc says about a process's threads: whether a SIGSTOP has taken effect.
#pragma once

#include <chrono>
#include <sys/types.h>

namespace cafex {

/// True when `pid` exists and every one of its threads is stopped (state T).
bool all_threads_stopped(pid_t pid);

/// Waits until all_threads_stopped(pid), at most `timeout` (checking /proc every
/// millisecond); true when it stopped. kill(SIGSTOP) returns before the target stops: on
/// a loaded machine its threads run on, for milliseconds, until the one that takes the
/// signal is scheduled, and a fault meant to come before a call can then come after it.
bool wait_stopped(pid_t pid, std::chrono::milliseconds timeout);

} // namespace cafex

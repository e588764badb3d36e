// Passing an open socket to another process over an AF_UNIX socket (SCM_RIGHTS): how a
// node agent's front door hands a driver's authenticated connection to the worker it
// asked for, so that the driver's link to a remote worker is direct.
#pragma once

#include <caf/error.hpp>

namespace cafex {

/// Sends `fd` over `channel`; `fd` stays open here (close it). errc::transport_failed
/// when the other process is gone.
caf::error send_fd(int channel, int fd);

/// Waits for a descriptor on `channel` and returns it (close-on-exec), or -1 when the
/// channel closed (or failed) and none will come.
int receive_fd(int channel);

} // namespace cafex

// Process-wide signal dispositions every cafex process sets at start-up.
#pragma once

namespace cafex {

/// Ignores SIGPIPE for the whole process. A write to a socket whose peer is gone must
/// fail with EPIPE (handled as a lost peer) instead of killing the process: cafex's own
/// writes pass MSG_NOSIGNAL (Asio does), but Gloo and CAF write with plain write(2).
/// Idempotent; call before the first socket exists.
void ignore_sigpipe();

/// True when SIGPIPE is ignored in this process (for start-up checks and tests).
bool sigpipe_ignored();

} // namespace cafex

#include "runtime/os/fd_passing.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"

namespace cafex {

namespace {

/// One data byte and room for one descriptor: what both sides send and receive.
struct fd_message {
  char byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  fd_message() {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof(ctrl);
  }
  fd_message(const fd_message&) = delete;
  fd_message& operator=(const fd_message&) = delete;
};

} // namespace

caf::error send_fd(int channel, int fd) {
  fd_message m;
  auto& msg = m.msg;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  do {
    n = ::sendmsg(channel, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != 1)
    return make_error(errc::transport_failed,
                      "cannot pass a connection to the worker: "
                        + (n < 0 ? errno_text(errno) : std::string("short write")));
  return caf::none;
}

int receive_fd(int channel) {
  for (;;) {
    fd_message m;
    auto& msg = m.msg;
    ssize_t n = ::recvmsg(channel, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS
        || c->cmsg_len != CMSG_LEN(sizeof(int)))
      continue; // a byte without a descriptor: nothing to serve
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
  }
}

} // namespace cafex

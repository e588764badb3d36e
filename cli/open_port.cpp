#include "cli/open_port.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"

namespace cafex::cli {

namespace {

// Closes the socket on every path.
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

} // namespace

caf::expected<int> get_open_port() {
  fd_guard s{::socket(AF_INET, SOCK_STREAM, 0)};
  if (s.fd < 0)
    return make_error(errc::transport_failed,
                      std::string("cannot create a socket to find a free port: ")
                        + errno_text(errno) + "; pass --port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return make_error(errc::transport_failed,
                      std::string("cannot bind 0.0.0.0:0 to find a free port: ")
                        + errno_text(errno) + "; pass --port");
  return static_cast<int>(ntohs(addr.sin_port));
}

} // namespace cafex::cli

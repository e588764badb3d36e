// A small blocking HTTP/1.1 client for cafex-serve's tests and load benchmark: one
// keep-alive connection, every call bounded by a deadline (Beast tcp_stream timeouts on
// a private io_context), server-sent events split into their data lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace cafex::serve {

struct http_reply {
  bool transport_ok = false; ///< false: connect/read/write failed or timed out (`error`)
  /// The first response header called `name` (case-insensitive), or "".
  std::string header(const std::string& name) const;
  std::string error;
  int status = 0;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers; ///< every response header
  std::string body;
  /// For text/event-stream bodies: each event as {event name ("" = message), data}.
  std::vector<std::pair<std::string, std::string>> events;
};

class http_client {
public:
  http_client(std::string host, uint16_t port,
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

  /// One request on the kept-alive connection (reconnects when the server closed it).
  http_reply request(const std::string& method, const std::string& target,
                     const std::string& body = "",
                     const std::vector<std::pair<std::string, std::string>>& headers = {});

  /// Sends `bytes` as they are on a fresh connection and reads until the server closes.
  http_reply raw(const std::string& bytes);

private:
  bool connect(http_reply& out);

  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  boost::asio::io_context ioc_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  bool connected_ = false;
};

/// Splits a text/event-stream body into (event, data) pairs.
std::vector<std::pair<std::string, std::string>> parse_events(const std::string& body);

} // namespace cafex::serve

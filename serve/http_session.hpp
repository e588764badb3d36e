// One HTTP connection of cafex-serve: reads requests (keep-alive), routes them, and
// writes either one response or a server-sent-event stream of tokens.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "http_server.hpp"

namespace cafex::serve {

class http_session : public std::enable_shared_from_this<http_session> {
public:
  http_session(boost::asio::ip::tcp::socket socket, std::shared_ptr<service_state> state);
  ~http_session();

  void start();
  /// Closes the connection when it waits for a request; else it closes after answering.
  void drain();

private:
  using request_t = boost::beast::http::request<boost::beast::http::string_body>;
  using response_t = boost::beast::http::response<boost::beast::http::string_body>;

  void read_request();
  void on_read(boost::beast::error_code ec);
  void route(request_t& req);
  void completions(request_t& req);
  void send(int status, std::string body, const char* content_type = "application/json",
            bool close = false);
  void send_error(int status, const std::string& message, bool close = false);
  void after_write(bool close);
  void linger_close();
  // Server-sent events.
  void stream_event(std::string event);
  void write_next_event();
  void close();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<service_state> state_;
  bool waiting_ = false; ///< reading, with no request in hand
  bool keep_alive_ = true;
  // The completion in progress.
  std::string req_id_;
  std::vector<int32_t> tokens_;
  size_t prompt_len_ = 0;
  bool streaming_ = false;
  bool stream_done_ = false;
  bool writing_ = false;
  std::deque<std::string> events_;
  std::shared_ptr<response_t> response_; ///< alive while written
};

} // namespace cafex::serve

// One HTTP connection of cafex-serve: reads requests (keep-alive), routes them, and
// writes either one response or a server-sent-event stream of completion chunks. While
// a completion runs, the session watches its socket: a client that goes away (closes or
// resets) cancels every choice of its completion at once, streaming or not.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "completion_response.hpp"
#include "http_server.hpp"

namespace cafex::serve {

/// How one response goes out, besides its status and body.
struct reply_options {
  const char* content_type = "application/json";
  bool close = false;
  const char* allow = nullptr; ///< 405: the methods the route takes
  int retry_after_s = 0;       ///< 503: when a retry may succeed
  bool auth_challenge = false; ///< 401: WWW-Authenticate
};

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
  bool authorized(const request_t& req) const;
  void health();
  void completions(request_t& req);
  void on_choice_token(size_t c, int32_t token, const token_logprobs* lp, const char* finish);
  void on_choice_done(size_t c, const caf::error& err);
  void fail_completion(const caf::error& err);
  void cancel_choices();
  void watch_disconnect();
  void send(int status, std::string body, const reply_options& o);
  void send(int status, std::string body) { send(status, std::move(body), reply_options{}); }
  void send_error(int status, const std::string& message, const std::string& code,
                  const std::string& param = {}, reply_options o = {});
  void send_caf_error(const caf::error& err, const std::string& message);
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
  // The completion in progress: its answer being built, and the batcher id of each
  // choice still running ("" once it ended).
  std::shared_ptr<completion_job> job_;
  std::vector<std::string> choice_ids_;
  uint64_t job_serial_ = 0; ///< tells a stale disconnect watch from the current one
  bool streaming_ = false;
  bool stream_done_ = false;
  bool writing_ = false;
  std::deque<std::string> events_;
  std::shared_ptr<response_t> response_; ///< alive while written
};

} // namespace cafex::serve

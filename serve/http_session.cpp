#include "http_session.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace cafex::serve {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using json = nlohmann::json;

namespace {

struct status_and_code {
  int status;
  const char* code;
  bool retry; ///< a retry (here, after Retry-After) may succeed
};

status_and_code status_of(const caf::error& err) {
  switch (code_of(err)) {
    case errc::too_many_in_flight: return {503, "queue_full", true};
    case errc::not_ready: return {503, "unavailable", true};
    case errc::worker_lost:
    case errc::node_lost: return {503, "worker_lost", true};
    case errc::transport_failed: return {503, "transport_failed", true};
    case errc::timeout: return {504, "timeout", false};
    case errc::model_failed: return {500, "model_failed", false};
    case errc::invalid_argument: return {400, "invalid_value", false};
    default: return {500, "internal_error", false};
  }
}

// Constant-time comparison: the time a wrong key takes says nothing about the right one.
bool same_secret(beast::string_view a, const std::string& b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < b.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

} // namespace

http_session::http_session(net::ip::tcp::socket socket, std::shared_ptr<service_state> state)
  : stream_(std::move(socket)), state_(std::move(state)) {}

http_session::~http_session() {
  // No batcher call here: a session with a request in the batcher is owned by its sinks,
  // so it dies only once its requests have left (or the batcher itself is destroyed).
  state_->sessions.erase(this);
  if (state_->on_session_end)
    state_->on_session_end();
}

void http_session::start() {
  state_->sessions.emplace(this, weak_from_this());
  read_request();
}

void http_session::drain() {
  if (waiting_)
    close();
}

void http_session::close() {
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  stream_.close();
}

void http_session::read_request() {
  if (state_->draining) {
    close();
    return;
  }
  parser_.emplace();
  parser_->body_limit(state_->max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(state_->max_header_bytes));
  waiting_ = true;
  stream_.expires_after(state_->idle_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     self->on_read(ec);
                   });
}

void http_session::on_read(beast::error_code ec) {
  waiting_ = false;
  if (ec == http::error::end_of_stream || ec == net::error::operation_aborted
      || ec == beast::error::timeout || ec == net::error::eof
      || ec == net::error::connection_reset || ec == net::error::bad_descriptor) {
    close();
    return;
  }
  reply_options closing;
  closing.close = true;
  if (ec == http::error::body_limit) {
    send_error(413,
               "request body exceeds " + std::to_string(state_->max_body_bytes)
                 + " bytes (the server's --max-body-bytes)",
               "body_too_large", "", closing);
    return;
  }
  if (ec == http::error::header_limit) {
    send_error(431,
               "request headers exceed " + std::to_string(state_->max_header_bytes) + " bytes",
               "headers_too_large", "", closing);
    return;
  }
  if (ec) {
    send_error(400, "malformed HTTP request: " + ec.message(), "malformed_http", "", closing);
    return;
  }
  auto req = parser_->release();
  keep_alive_ = req.keep_alive();
  route(req);
}

bool http_session::authorized(const request_t& req) const {
  if (state_->api_key.empty())
    return true;
  auto h = req[http::field::authorization];
  constexpr beast::string_view bearer = "Bearer ";
  return h.size() > bearer.size() && beast::iequals(h.substr(0, bearer.size()), bearer)
         && same_secret(h.substr(bearer.size()), state_->api_key);
}

void http_session::route(request_t& req) {
  auto target = std::string(req.target());
  if (auto q = target.find('?'); q != std::string::npos)
    target.resize(q);
  auto method_is = [&](http::verb v, const char* allowed) {
    if (req.method() == v)
      return true;
    reply_options o;
    o.allow = allowed;
    send_error(405, "use " + std::string(allowed) + " " + target, "method_not_allowed", "", o);
    return false;
  };
  if (target == "/health") {
    if (method_is(http::verb::get, "GET"))
      health();
    return;
  }
  const bool known = target == "/v1/completions" || target == "/metrics"
                     || target == "/v1/models" || target.rfind("/v1/models/", 0) == 0
                     || target == "/openapi.json";
  if (!known) {
    send_error(404,
               "no route " + target
                 + "; the routes are POST /v1/completions, GET /v1/models, GET /health, "
                   "GET /metrics, GET /openapi.json",
               "not_found");
    return;
  }
  if (!authorized(req)) {
    reply_options o;
    o.auth_challenge = true;
    send_error(401,
               "missing or wrong API key: send the header 'Authorization: Bearer KEY' with "
               "the server's --api-key",
               "invalid_api_key", "", o);
    return;
  }
  if (target == "/v1/completions") {
    if (method_is(http::verb::post, "POST"))
      completions(req);
  } else if (target == "/metrics") {
    if (!method_is(http::verb::get, "GET"))
      return;
    batch_gauges g{state_->batch.steps_in_flight(), state_->batch.queued(),
                   state_->batch.running(), state_->batch.accepted()};
    reply_options o;
    o.content_type = "text/plain; version=0.0.4; charset=utf-8";
    send(200, state_->metrics.render(g, state_->health.latest()), o);
  } else if (target == "/openapi.json") {
    if (method_is(http::verb::get, "GET"))
      send(200, state_->openapi);
  } else if (target == "/v1/models") {
    if (method_is(http::verb::get, "GET"))
      send(200, models_list(state_->limits.model_name, state_->created,
                            state_->limits.max_seq_len));
  } else if (method_is(http::verb::get, "GET")) { // /v1/models/ID
    auto id = target.substr(std::string("/v1/models/").size());
    if (id != state_->limits.model_name) {
      send_error(404,
                 "the model '" + id + "' does not exist; this server serves '"
                   + state_->limits.model_name + "'",
                 "model_not_found", "model");
      return;
    }
    auto list = json::parse(
      models_list(state_->limits.model_name, state_->created, state_->limits.max_seq_len));
    send(200, list.at("data").at(0).dump());
  }
}

void http_session::health() {
  auto h = state_->health.latest();
  json body = {{"status", h.status()}};
  if (!h.reason.empty())
    body["reason"] = h.reason;
  json workers = json::array();
  for (const auto& w : h.workers)
    workers.push_back({{"rank", w.rank}, {"node", w.node_id}, {"state", to_string(w.state)}});
  body["workers"] = workers;
  send(h.http_status(), body.dump());
}

void http_session::completions(request_t& req) {
  auto parsed = parse_completion_request(req.body(), state_->limits);
  if (auto* bad = std::get_if<request_error>(&parsed)) {
    send_error(bad->status, bad->message, bad->code, bad->param);
    return;
  }
  auto& cr = std::get<completion_request>(parsed);
  auto job = std::make_shared<completion_job>(cr, new_completion_id(),
                                              state_->limits.model_name, state_->created);
  if (auto why = state_->batch.refusal(job->choices())) {
    send_caf_error(why, "");
    return;
  }
  job_ = job;
  ++job_serial_;
  streaming_ = cr.stream;
  stream_done_ = false;
  choice_ids_.assign(job->choices(), std::string{});
  std::weak_ptr<http_session> weak = shared_from_this();
  for (size_t c = 0; c < job->choices(); ++c) {
    const size_t prompt = c / static_cast<size_t>(cr.n);
    const int j = static_cast<int>(c % static_cast<size_t>(cr.n));
    request_sink sink;
    sink.on_token = [weak, c, serial = job_serial_](int32_t t, const token_logprobs* lp,
                                                    const char* finish) {
      auto self = weak.lock();
      if (self && self->job_serial_ == serial && self->job_)
        self->on_choice_token(c, t, lp, finish);
    };
    // The sink owns the session until the choice ends, so an answer always has a writer.
    sink.on_done = [self = shared_from_this(), c, serial = job_serial_](const caf::error& e) {
      if (self->job_serial_ == serial && self->job_)
        self->on_choice_done(c, e);
    };
    auto id = state_->batch.add(cr.prompts[prompt],
                                cr.choice_sampling(prompt, j, state_->limits),
                                std::move(sink));
    if (!id) {
      cancel_choices();
      job_.reset();
      send_caf_error(id.error(), "");
      return;
    }
    if (job_ && c < choice_ids_.size())
      choice_ids_[c] = *id;
  }
  if (!job_)
    return; // every choice ended inside add() (cannot happen today; stay safe)
  if (streaming_) {
    // Headers by hand: the body is an open-ended event stream ended by closing.
    events_.push_front("HTTP/1.1 200 OK\r\nServer: cafex-serve\r\nContent-Type: "
                       "text/event-stream\r\nCache-Control: no-cache\r\nConnection: close"
                       "\r\n\r\n");
    write_next_event();
  }
  watch_disconnect();
}

void http_session::on_choice_token(size_t c, int32_t token, const token_logprobs* lp,
                                   const char* finish) {
  state_->metrics.tokens(1);
  auto event = job_->token(c, token, lp, finish);
  if (streaming_)
    stream_event(std::move(event));
}

void http_session::on_choice_done(size_t c, const caf::error& err) {
  if (c < choice_ids_.size())
    choice_ids_[c].clear();
  if (err) {
    fail_completion(err);
    return;
  }
  if (!job_->choice_done(c))
    return;
  auto job = std::move(job_);
  job_.reset();
  if (streaming_) {
    state_->metrics.response(200);
    stream_event(job->stream_end());
    stream_done_ = true;
    write_next_event();
  } else {
    send(200, job->body());
  }
}

void http_session::fail_completion(const caf::error& err) {
  // One choice failed: the completion fails as a whole; the other choices stop now.
  auto job = std::move(job_);
  job_.reset();
  cancel_choices();
  auto msg = "completion " + job->id() + " failed after "
             + std::to_string(job->completion_tokens()) + " token(s): " + describe(err);
  if (streaming_) {
    auto sc = status_of(err);
    state_->metrics.response(sc.status);
    stream_event("data: " + openai_error(sc.status, msg, sc.code) + "\n\ndata: [DONE]\n\n");
    stream_done_ = true;
    write_next_event();
  } else {
    send_caf_error(err, msg);
  }
}

void http_session::cancel_choices() {
  auto ids = std::move(choice_ids_);
  choice_ids_.clear();
  for (const auto& id : ids)
    if (!id.empty())
      state_->batch.cancel(id);
}

void http_session::watch_disconnect() {
  // The client sends nothing while it waits for its answer: the socket turning readable
  // means it closed or reset (or pipelined its next request, then the watch ends).
  stream_.socket().async_wait(net::ip::tcp::socket::wait_read, [self = shared_from_this(),
                                                                serial = job_serial_](
                                                                 beast::error_code ec) {
    if (ec || self->job_serial_ != serial || !self->job_)
      return;
    char c = 0;
    auto n = ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
      return; // a pipelined request: read after this answer
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      self->watch_disconnect();
      return;
    }
    // Gone: its choices stop now and free their batch slots and KV caches.
    self->state_->metrics.cancelled(self->job_->choices());
    self->job_.reset();
    self->cancel_choices();
    self->events_.clear();
    self->close();
  });
}

void http_session::send(int status, std::string body, const reply_options& o) {
  state_->metrics.response(status);
  auto res = std::make_shared<response_t>(static_cast<http::status>(status), 11);
  res->set(http::field::server, "cafex-serve");
  res->set(http::field::content_type, o.content_type);
  if (o.allow != nullptr)
    res->set(http::field::allow, o.allow);
  if (o.retry_after_s > 0)
    res->set(http::field::retry_after, std::to_string(o.retry_after_s));
  if (o.auth_challenge)
    res->set(http::field::www_authenticate, "Bearer");
  bool keep = keep_alive_ && !o.close && !state_->draining;
  res->keep_alive(keep);
  res->body() = std::move(body);
  res->prepare_payload();
  response_ = res;
  stream_.expires_after(state_->idle_timeout);
  http::async_write(stream_, *res,
                    [self = shared_from_this(), keep, close = o.close](beast::error_code ec,
                                                                       size_t) {
                      self->response_.reset();
                      if (ec) {
                        self->close();
                        return;
                      }
                      if (close)
                        self->linger_close();
                      else if (keep)
                        self->read_request();
                      else
                        self->close();
                    });
}

void http_session::send_error(int status, const std::string& message, const std::string& code,
                              const std::string& param, reply_options o) {
  send(status, openai_error(status, message, code, param), o);
}

void http_session::send_caf_error(const caf::error& err, const std::string& message) {
  auto sc = status_of(err);
  reply_options o;
  // A retry helps unless the executor gave up for good.
  if (sc.retry && !state_->batch.failed())
    o.retry_after_s = state_->retry_after_s;
  send_error(sc.status, message.empty() ? describe(err) : message, sc.code, "", o);
}

void http_session::linger_close() {
  // After refusing a request mid-body: stop sending, and read what the client still
  // sends until it closes, so our response is not lost to a reset.
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::chrono::seconds(2));
  auto sink = std::make_shared<std::array<char, 16384>>();
  auto loop = std::make_shared<std::function<void(beast::error_code, size_t)>>();
  *loop = [self = shared_from_this(), sink, loop](beast::error_code ec, size_t) {
    if (ec) {
      self->stream_.close();
      *loop = nullptr; // break the cycle
      return;
    }
    self->stream_.async_read_some(net::buffer(*sink), *loop);
  };
  stream_.async_read_some(net::buffer(*sink), *loop);
}

void http_session::stream_event(std::string event) {
  if (event.empty())
    return;
  events_.push_back(std::move(event));
  write_next_event();
}

void http_session::write_next_event() {
  if (writing_)
    return;
  if (events_.empty()) {
    if (stream_done_)
      close();
    return;
  }
  writing_ = true;
  auto data = std::make_shared<std::string>(std::move(events_.front()));
  events_.pop_front();
  stream_.expires_after(state_->idle_timeout);
  net::async_write(stream_, net::buffer(*data),
                   [self = shared_from_this(), data](beast::error_code ec, size_t) {
                     self->writing_ = false;
                     if (ec) {
                       // The client is gone: drop its choices, stop writing.
                       if (self->job_)
                         self->state_->metrics.cancelled(self->job_->choices());
                       self->job_.reset();
                       self->cancel_choices();
                       self->events_.clear();
                       self->close();
                       return;
                     }
                     self->write_next_event();
                   });
}

} // namespace cafex::serve

#include "http_session.hpp"

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace cafex::serve {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using json = nlohmann::json;

namespace {

int status_of(const caf::error& err) {
  switch (code_of(err)) {
    case errc::not_ready:
    case errc::too_many_in_flight:
    case errc::worker_lost:
    case errc::node_lost: return 503; // retry later or elsewhere
    case errc::timeout: return 504;
    default: return 500;
  }
}

std::string error_json(const std::string& message, int status) {
  return json{{"error",
               {{"message", message},
                {"type", status < 500 ? "invalid_request_error" : "server_error"},
                {"code", status}}}}
    .dump();
}

} // namespace

http_session::http_session(net::ip::tcp::socket socket, std::shared_ptr<service_state> state)
  : stream_(std::move(socket)), state_(std::move(state)) {}

http_session::~http_session() {
  // No batcher call here: a session with a request in the batcher is owned by its sink,
  // so it dies only once the request has left (or the batcher itself is destroyed).
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
  if (ec == http::error::body_limit) {
    send_error(400,
               "request body exceeds " + std::to_string(state_->max_body_bytes)
                 + " bytes (the server's --max-body-bytes)",
               true);
    return;
  }
  if (ec) {
    send_error(400, "malformed HTTP request: " + ec.message(), true);
    return;
  }
  auto req = parser_->release();
  keep_alive_ = req.keep_alive();
  route(req);
}

void http_session::route(request_t& req) {
  auto target = std::string(req.target());
  if (auto q = target.find('?'); q != std::string::npos)
    target.resize(q);
  auto method_is = [&](http::verb v, const char* allowed) {
    if (req.method() == v)
      return true;
    send_error(405, "use " + std::string(allowed) + " " + target);
    return false;
  };
  if (target == "/v1/completions") {
    if (method_is(http::verb::post, "POST"))
      completions(req);
  } else if (target == "/health") {
    if (!method_is(http::verb::get, "GET"))
      return;
    auto h = state_->health.latest();
    json body = {{"status", h.status()}};
    if (!h.reason.empty())
      body["reason"] = h.reason;
    json workers = json::array();
    for (const auto& w : h.workers)
      workers.push_back({{"rank", w.rank}, {"node", w.node_id}, {"state", w.state}});
    body["workers"] = workers;
    send(h.http_status(), body.dump());
  } else if (target == "/metrics") {
    if (!method_is(http::verb::get, "GET"))
      return;
    batch_gauges g{state_->batch.steps_in_flight(), state_->batch.queued(),
                   state_->batch.running(), state_->batch.accepted()};
    send(200, state_->metrics.render(g, state_->health.latest()),
         "text/plain; version=0.0.4; charset=utf-8");
  } else {
    send_error(404, "no route " + target
                      + "; try POST /v1/completions, GET /health, "
                        "GET /metrics");
  }
}

void http_session::completions(request_t& req) {
  auto parsed = parse_completion_request(req.body(), state_->limits);
  if (auto* bad = std::get_if<request_error>(&parsed)) {
    send_error(400, bad->message);
    return;
  }
  auto& cr = std::get<completion_request>(parsed);
  streaming_ = cr.stream;
  stream_done_ = false;
  tokens_.clear();
  prompt_len_ = cr.prompt.size();
  std::weak_ptr<http_session> weak = shared_from_this();
  request_sink sink;
  sink.on_token = [weak](int32_t token) {
    auto self = weak.lock();
    if (!self)
      return;
    self->tokens_.push_back(token);
    self->state_->metrics.tokens(1);
    if (self->streaming_)
      self->stream_event(
        "data: "
        + json{{"id", self->req_id_}, {"index", self->tokens_.size() - 1}, {"token", token}}
            .dump()
        + "\n\n");
  };
  // The sink owns the session until the request ends, so an answer always has a writer.
  sink.on_done = [self = shared_from_this()](const caf::error& err) {
    auto id = std::move(self->req_id_);
    self->req_id_.clear();
    if (err) {
      auto status = status_of(err);
      auto msg = "request " + id + " failed after " + std::to_string(self->tokens_.size())
                 + " token(s): " + describe(err);
      if (self->streaming_) {
        self->state_->metrics.response(status);
        self->stream_event("event: error\ndata: " + error_json(msg, status) + "\n\n");
        self->stream_done_ = true;
        self->write_next_event();
      } else {
        self->send_error(status, msg);
      }
      return;
    }
    json done = {{"id", id},
                 {"object", "text_completion"},
                 {"tokens", self->tokens_},
                 {"finish_reason", "length"},
                 {"usage",
                  {{"prompt_tokens", self->prompt_len_},
                   {"completion_tokens", self->tokens_.size()}}}};
    if (self->streaming_) {
      self->state_->metrics.response(200);
      done["done"] = true;
      self->stream_event("data: " + done.dump() + "\n\ndata: [DONE]\n\n");
      self->stream_done_ = true;
      self->write_next_event();
    } else {
      self->send(200, done.dump());
    }
  };
  auto id = state_->batch.add(std::move(cr.prompt), cr.max_tokens, std::move(sink));
  if (!id) {
    send_error(status_of(id.error()), describe(id.error()));
    return;
  }
  req_id_ = *id;
  if (streaming_) {
    // Headers by hand: the body is an open-ended event stream ended by closing.
    events_.push_front("HTTP/1.1 200 OK\r\nServer: cafex-serve\r\nContent-Type: "
                       "text/event-stream\r\nCache-Control: no-cache\r\nConnection: close"
                       "\r\n\r\n");
    write_next_event();
  }
}

void http_session::send(int status, std::string body, const char* content_type, bool close) {
  state_->metrics.response(status);
  auto res = std::make_shared<response_t>(static_cast<http::status>(status), 11);
  res->set(http::field::server, "cafex-serve");
  res->set(http::field::content_type, content_type);
  bool keep = keep_alive_ && !close && !state_->draining;
  res->keep_alive(keep);
  res->body() = std::move(body);
  res->prepare_payload();
  response_ = res;
  stream_.expires_after(state_->idle_timeout);
  http::async_write(stream_, *res,
                    [self = shared_from_this(), keep, close](beast::error_code ec, size_t) {
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

void http_session::send_error(int status, const std::string& message, bool close) {
  send(status, error_json(message, status), "application/json", close);
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
                       // The client is gone: drop its request, stop writing.
                       if (!self->req_id_.empty())
                         self->state_->batch.cancel(self->req_id_);
                       self->req_id_.clear();
                       self->events_.clear();
                       self->close();
                       return;
                     }
                     self->write_next_event();
                   });
}

} // namespace cafex::serve

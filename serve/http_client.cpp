#include "http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

namespace cafex::serve {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

http_client::http_client(std::string host, uint16_t port, std::chrono::milliseconds timeout)
  : host_(std::move(host)), port_(port), timeout_(timeout), stream_(ioc_) {}

bool http_client::connect(http_reply& out) {
  beast::error_code ec;
  stream_.close();
  buffer_.clear();
  tcp::endpoint ep{net::ip::make_address(host_, ec), port_};
  if (ec) {
    out.error = "bad host " + host_;
    return false;
  }
  stream_.expires_after(timeout_);
  stream_.async_connect(ep, [&](beast::error_code e) { ec = e; });
  ioc_.restart();
  ioc_.run();
  if (ec) {
    out.error = "connect: " + ec.message();
    return false;
  }
  stream_.socket().set_option(tcp::no_delay(true), ec);
  connected_ = true;
  return true;
}

namespace {

template <class Parser>
void fill(http_reply& out, Parser& p) {
  auto& res = p.get();
  out.status = res.result_int();
  out.content_type = std::string(res[http::field::content_type]);
  for (const auto& f : res)
    out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  out.body = std::move(res.body());
  if (out.content_type.rfind("text/event-stream", 0) == 0)
    out.events = parse_events(out.body);
  out.transport_ok = true;
}

} // namespace

std::string http_reply::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (beast::iequals(k, name))
      return v;
  return {};
}

http_reply
http_client::request(const std::string& method, const std::string& target,
                     const std::string& body,
                     const std::vector<std::pair<std::string, std::string>>& headers) {
  http_reply out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool fresh = !connected_;
    if (!connected_ && !connect(out))
      return out;
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, host_);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    for (const auto& [k, v] : headers)
      req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    beast::error_code ec;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1 << 30);
    stream_.expires_after(timeout_);
    http::async_write(stream_, req, [&](beast::error_code e, size_t) {
      ec = e;
      if (!ec)
        http::async_read(stream_, buffer_, parser,
                         [&](beast::error_code e2, size_t) { ec = e2; });
    });
    ioc_.restart();
    ioc_.run();
    if (!ec) {
      fill(out, parser);
      if (!parser.get().keep_alive())
        connected_ = false;
      return out;
    }
    connected_ = false;
    // A kept-alive connection the server closed meanwhile: retry once on a new one.
    if (fresh
        || (ec != http::error::end_of_stream && ec != net::error::connection_reset
            && ec != net::error::broken_pipe)) {
      out.error = "request: " + ec.message();
      return out;
    }
  }
  out.error = "request: the server closed the connection twice";
  return out;
}

http_reply http_client::raw(const std::string& bytes) {
  http_reply out;
  if (!connect(out))
    return out;
  connected_ = false;
  beast::error_code ec;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 30);
  stream_.expires_after(timeout_);
  net::async_write(stream_, net::buffer(bytes), [&](beast::error_code e, size_t) {
    // Read even when the server stopped reading early (oversized bodies): its answer may
    // already be there.
    http::async_read(stream_, buffer_, parser,
                     [&, e](beast::error_code e2, size_t) { ec = e2 ? e2 : e; });
  });
  ioc_.restart();
  ioc_.run();
  if (parser.is_header_done() && (!ec || parser.is_done())) {
    fill(out, parser);
    return out;
  }
  out.error = "raw: " + ec.message();
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_events(const std::string& body) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string event, data;
  size_t pos = 0;
  while (pos < body.size()) {
    auto nl = body.find('\n', pos);
    if (nl == std::string::npos)
      break; // an unterminated last line is not an event
    auto line = body.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty()) {
      if (!data.empty() || !event.empty())
        out.emplace_back(event, data);
      event.clear();
      data.clear();
    } else if (line.rfind("event: ", 0) == 0) {
      event = line.substr(7);
    } else if (line.rfind("data: ", 0) == 0) {
      data += line.substr(6);
    }
  }
  return out;
}

} // namespace cafex::serve

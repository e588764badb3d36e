#include "transport/shm_messages.hpp"

#include <cstring>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "runtime/error.hpp"

namespace cafex {

namespace {

template <class T>
std::vector<char> serialize(const T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  auto err = sink(const_cast<T&>(x));
  static_cast<void>(err); // plain containers of numbers and strings cannot fail
  return buf;
}

template <class T>
caf::error deserialize(const char* data, size_t n, T& x) {
  caf::binary_deserializer source{nullptr, data, n};
  if (auto err = source(x))
    return make_error(errc::transport_failed, "malformed message on the shared-memory path");
  return caf::none;
}

struct reader {
  const std::vector<char>& buf;
  size_t pos = 0;
  template <class T>
  bool get(T& x) {
    if (pos + sizeof(T) > buf.size())
      return false;
    std::memcpy(&x, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return true;
  }
};

caf::error malformed(const char* what) {
  return make_error(errc::transport_failed,
                    std::string("truncated ") + what + " on the shared-memory path");
}

/// An error as a code byte and its text (without the code's name: make_error adds it).
void encode_error(const caf::error& err, std::vector<char>& out) {
  auto code = static_cast<uint8_t>(code_of(err) == errc::none ? errc::method_failed
                                                              : code_of(err));
  auto text = describe(err);
  auto colon = text.find(": ");
  if (code_of(err) != errc::none && colon != std::string::npos)
    text = text.substr(colon + 2);
  out.push_back(static_cast<char>(code));
  out.insert(out.end(), text.begin(), text.end());
}

caf::error decode_error(const std::vector<char>& bytes, size_t pos) {
  auto code = static_cast<errc>(static_cast<uint8_t>(bytes[pos]));
  return make_error(code,
                    std::string(bytes.begin() + static_cast<long>(pos + 1), bytes.end()));
}

} // namespace

std::vector<char> encode_scheduler_output(const scheduler_output& step) {
  return serialize(step);
}

void encode_scheduler_output(const scheduler_output& step, std::vector<char>& into) {
  into.clear(); // CAF's serializer appends at the buffer's end
  caf::binary_serializer sink{nullptr, into};
  auto err = sink(const_cast<scheduler_output&>(step));
  static_cast<void>(err); // plain containers of numbers and strings cannot fail
}

caf::error write_command(shm_ring& ring, uint64_t seq, const std::vector<char>& step_bytes,
                         std::chrono::milliseconds timeout) {
  uint32_t len = static_cast<uint32_t>(step_bytes.size());
  return ring.write({{&seq, 8}, {&len, 4}, {step_bytes.data(), step_bytes.size()}}, timeout);
}

caf::error write_handoff(shm_ring& ring, uint64_t seq, const std::vector<char>& step_bytes,
                         const intermediate_tensors& t, std::chrono::milliseconds timeout) {
  uint32_t len = static_cast<uint32_t>(step_bytes.size());
  int64_t dims[2] = {t.num_tokens, t.hidden_size};
  return ring.write({{&seq, 8},
                     {&len, 4},
                     {step_bytes.data(), step_bytes.size()},
                     {dims, sizeof(dims)},
                     {t.hidden.data(), t.hidden.size() * sizeof(float)}},
                    timeout);
}

caf::error write_report(shm_ring& ring, shm_doorbell* bell, uint64_t seq, int32_t rank,
                        report_kind kind, const model_runner_output* out,
                        const caf::error* err, std::chrono::milliseconds timeout) {
  auto k = static_cast<uint8_t>(kind);
  std::vector<char> payload;
  if (kind == report_kind::result && out) {
    payload = serialize(*out);
  } else if (kind == report_kind::failure && err) {
    encode_error(*err, payload);
  }
  return ring.write({{&seq, 8}, {&rank, 4}, {&k, 1}, {payload.data(), payload.size()}},
                    timeout, bell);
}

caf::expected<step_message> read_step_message(const std::vector<char>& bytes, bool handoff) {
  reader in{bytes};
  step_message m;
  uint32_t len = 0;
  if (!in.get(m.seq) || !in.get(len) || in.pos + len > bytes.size())
    return malformed("step message");
  m.step_bytes.assign(bytes.begin() + static_cast<long>(in.pos),
                      bytes.begin() + static_cast<long>(in.pos + len));
  if (auto err = deserialize(m.step_bytes.data(), m.step_bytes.size(), m.step))
    return err;
  in.pos += len;
  if (!handoff)
    return m;
  int64_t dims[2];
  if (!in.get(dims[0]) || !in.get(dims[1]) || dims[0] < 0 || dims[1] < 0
      || (dims[1] != 0 && dims[0] > static_cast<int64_t>(bytes.size()) / dims[1]))
    return malformed("tensor header");
  auto n = static_cast<size_t>(dims[0] * dims[1]);
  if (in.pos + n * sizeof(float) != bytes.size())
    return malformed("tensor bytes");
  m.has_tensors = true;
  m.tensors.num_tokens = dims[0];
  m.tensors.hidden_size = dims[1];
  m.tensors.hidden.resize(n);
  if (n > 0) // an empty vector's data() may be null, which memcpy must not get
    std::memcpy(m.tensors.hidden.data(), bytes.data() + in.pos, n * sizeof(float));
  return m;
}

caf::expected<report_message> read_report(const std::vector<char>& bytes) {
  reader in{bytes};
  report_message m;
  uint8_t k = 0;
  if (!in.get(m.seq) || !in.get(m.rank) || !in.get(k) || k > 2)
    return malformed("report");
  m.kind = static_cast<report_kind>(k);
  if (m.kind == report_kind::result) {
    if (auto err = deserialize(bytes.data() + in.pos, bytes.size() - in.pos, m.output))
      return err;
  } else if (m.kind == report_kind::failure) {
    if (in.pos >= bytes.size())
      return malformed("failure report");
    m.error = decode_error(bytes, in.pos);
  }
  return m;
}

caf::error write_call(shm_ring& ring, uint64_t id, const std::string& method,
                      const std::string& args, std::chrono::milliseconds timeout) {
  auto len = static_cast<uint32_t>(method.size());
  return ring.write(
    {{&id, 8}, {&len, 4}, {method.data(), method.size()}, {args.data(), args.size()}},
    timeout);
}

caf::expected<call_message> read_call(const std::vector<char>& bytes) {
  reader in{bytes};
  call_message m;
  uint32_t len = 0;
  if (!in.get(m.id) || !in.get(len) || in.pos + len > bytes.size())
    return malformed("method call");
  auto at = bytes.begin() + static_cast<long>(in.pos);
  m.method.assign(at, at + len);
  m.args.assign(at + len, bytes.end());
  return m;
}

caf::error write_reply(shm_ring& ring, shm_doorbell* bell, uint64_t id, int32_t rank,
                       const caf::expected<std::string>& result,
                       std::chrono::milliseconds timeout) {
  uint8_t ok = result ? 1 : 0;
  std::vector<char> err;
  if (!result)
    encode_error(result.error(), err);
  const void* data = result ? static_cast<const void*>(result->data()) : err.data();
  size_t size = result ? result->size() : err.size();
  return ring.write({{&id, 8}, {&rank, 4}, {&ok, 1}, {data, size}}, timeout, bell);
}

caf::expected<reply_message> read_reply(const std::vector<char>& bytes) {
  reader in{bytes};
  reply_message m;
  uint8_t ok = 0;
  if (!in.get(m.id) || !in.get(m.rank) || !in.get(ok) || ok > 1
      || (!ok && in.pos >= bytes.size()))
    return malformed("method reply");
  if (ok)
    m.result = std::string(bytes.begin() + static_cast<long>(in.pos), bytes.end());
  else
    m.result = decode_error(bytes, in.pos);
  return m;
}

} // namespace cafex

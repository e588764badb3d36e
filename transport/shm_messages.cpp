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
    auto code = static_cast<uint8_t>(code_of(*err) == errc::none ? errc::method_failed
                                                                 : code_of(*err));
    auto text = describe(*err);
    auto colon = text.find(": ");
    if (code_of(*err) != errc::none && colon != std::string::npos)
      text = text.substr(colon + 2); // drop the code name: make_error adds it again
    payload.push_back(static_cast<char>(code));
    payload.insert(payload.end(), text.begin(), text.end());
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
    auto code = static_cast<errc>(static_cast<uint8_t>(bytes[in.pos]));
    m.error = make_error(code, std::string(bytes.begin() + static_cast<long>(in.pos + 1),
                                           bytes.end()));
  }
  return m;
}

} // namespace cafex

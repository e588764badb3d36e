#include "runtime/models/collective.hpp"

#include <cstring>
#include <string>
#include <vector>

#include "runtime/error.hpp"

namespace cafex {

namespace {

size_t words_for(size_t bytes) {
  return (bytes + sizeof(int64_t) - 1) / sizeof(int64_t);
}

caf::error bad_root(const collective& c, int root) {
  return make_error(errc::invalid_argument, "broadcast from rank " + std::to_string(root)
                                              + " in a group of " + std::to_string(c.size())
                                              + " ranks");
}

} // namespace

caf::error collective::all_reduce_sum_f32(float*, size_t) {
  return make_error(errc::invalid_argument,
                    std::string("the ") + transport()
                      + " collective has no float32 all-reduce; use the shm, gloo or nccl "
                        "transport");
}

caf::error collective::all_gather(const void* in, void* out, size_t bytes) {
  if (bytes == 0)
    return caf::none;
  // Every rank's part at its offset, zeros elsewhere: the int64 sum is exact (x + 0).
  const size_t total = bytes * static_cast<size_t>(size());
  std::vector<int64_t> words(words_for(total), 0);
  std::memcpy(reinterpret_cast<char*>(words.data()) + bytes * static_cast<size_t>(rank()), in,
              bytes);
  if (auto err = all_reduce_sum(words.data(), words.size()))
    return err;
  std::memcpy(out, words.data(), total);
  return caf::none;
}

caf::error collective::broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= size())
    return bad_root(*this, root);
  if (bytes == 0)
    return caf::none;
  std::vector<int64_t> words(words_for(bytes), 0);
  if (rank() == root)
    std::memcpy(words.data(), data, bytes);
  if (auto err = all_reduce_sum(words.data(), words.size()))
    return err;
  std::memcpy(data, words.data(), bytes);
  return caf::none;
}

caf::error solo_collective::all_gather(const void* in, void* out, size_t bytes) {
  if (bytes > 0 && in != out)
    std::memmove(out, in, bytes);
  return caf::none;
}

caf::error check_tp_transport(const std::string& choice) {
  if (choice == "auto" || choice == "shm" || choice == "tcp" || choice == "gloo")
    return caf::none;
  return make_error(errc::invalid_argument,
                    "unknown TP transport '" + choice + "'; use auto, shm, tcp or gloo");
}

caf::error solo_collective::broadcast(void*, size_t, int root) {
  return root == 0 ? caf::none : bad_root(*this, root);
}

} // namespace cafex

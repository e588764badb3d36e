// The float32 buffers that hold a shard's weights: std::vector with an allocator that puts
// large buffers on transparent huge pages (2 MiB, madvise mode, as Debian's kernels ship).
// A 0.5 B shard then costs about 1 100 page faults to fill instead of 550 000 (the kernel's
// page zeroing was 46% of the load in perf), and streaming the weights on every step misses
// the TLB far less. Small buffers (norms, biases) come from the ordinary heap.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

#include <sys/mman.h>

namespace cafex::hf {

template <class T>
struct huge_page_allocator {
  using value_type = T;
  static constexpr size_t huge_page = size_t{2} << 20;

  huge_page_allocator() = default;
  template <class U>
  huge_page_allocator(const huge_page_allocator<U>&) noexcept {
    // Stateless.
  }

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < huge_page) {
      if (void* p = std::malloc(bytes))
        return static_cast<T*>(p);
      throw std::bad_alloc{};
    }
    const size_t rounded = (bytes + huge_page - 1) / huge_page * huge_page;
    void* p = std::aligned_alloc(huge_page, rounded);
    if (p == nullptr)
      throw std::bad_alloc{};
    ::madvise(p, rounded, MADV_HUGEPAGE); // advice only: 4 KiB pages if refused
    return static_cast<T*>(p);
  }

  void deallocate(T* p, size_t) noexcept { std::free(p); }

  template <class U>
  bool operator==(const huge_page_allocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const huge_page_allocator<U>&) const noexcept {
    return false;
  }
};

using weight_buffer = std::vector<float, huge_page_allocator<float>>;

} // namespace cafex::hf

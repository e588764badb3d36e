#pragma once
namespace cafex {
/// The cafex version; node agents, workers and drivers refuse peers with another one.
inline const char* version() {
  return CAFEX_VERSION;
}
} // namespace cafex

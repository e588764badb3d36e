#include "runtime/models/model_runner.hpp"

#include <mutex>

#include "runtime/models/hf/llama_model.hpp"
#include "runtime/models/reference_model.hpp"
#ifdef CAFEX_HAVE_CUDA
#include "runtime/models/cuda/cuda_llama_model.hpp"
#include "runtime/models/cuda/cuda_reference_model.hpp"
#endif

namespace cafex {

namespace {

// The registry is a singleton with a fixed header, so its lock lives here.
std::mutex& registry_mutex() {
  static std::mutex mx;
  return mx;
}

} // namespace

model_registry& model_registry::instance() {
  static model_registry registry;
  return registry;
}

model_registry::model_registry() {
  factories_.emplace("reference", [] { return std::make_unique<reference_model>(); });
  factories_.emplace("hf", [] { return std::make_unique<hf::llama_model>(); });
#ifdef CAFEX_HAVE_CUDA
  factories_.emplace("reference-cuda",
                     [] { return std::make_unique<cuda_reference_model>(); });
  factories_.emplace("hf-cuda", [] { return std::make_unique<cuda_llama_model>(); });
#endif
}

void model_registry::add(const std::string& name, model_factory factory) {
  std::lock_guard<std::mutex> guard{registry_mutex()};
  factories_[name] = std::move(factory); // a later add replaces an earlier one
}

std::unique_ptr<model_runner> model_registry::create(const std::string& name) const {
  model_factory factory;
  {
    std::lock_guard<std::mutex> guard{registry_mutex()};
    auto i = factories_.find(name);
    if (i == factories_.end() || !i->second)
      return nullptr;
    factory = i->second;
  }
  return factory(); // outside the lock: a factory may be slow or use the registry
}

std::string model_registry::resolve(const std::string& name, const std::string& device) const {
  std::lock_guard<std::mutex> guard{registry_mutex()};
  auto specific = name + "-" + device;
  return factories_.count(specific) != 0 ? specific : name;
}

std::vector<std::string> model_registry::names() const {
  std::lock_guard<std::mutex> guard{registry_mutex()};
  std::vector<std::string> out;
  for (const auto& kv : factories_)
    out.push_back(kv.first);
  return out;
}

} // namespace cafex

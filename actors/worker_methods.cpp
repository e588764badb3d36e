#include "actors/worker_methods.hpp"

#include <algorithm>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "actors/worker_device.hpp"
#include "runtime/defaults.hpp"
#include "runtime/error.hpp"

namespace cafex {

namespace {

/// The seed passes one list for every worker; each picks its entry by rpc_rank.
caf::expected<json> entry_for(const worker_state& st, const json& args, const char* what) {
  if (!args.is_array())
    return make_error(errc::invalid_argument,
                      std::string(what) + " expects a list with one entry per rank");
  if (st.rpc_rank < 0 || static_cast<size_t>(st.rpc_rank) >= args.size())
    return make_error(errc::invalid_argument,
                      std::string(what) + " got " + std::to_string(args.size())
                        + " entries but this worker has rank " + std::to_string(st.rpc_rank));
  return args[st.rpc_rank];
}

caf::expected<json> adjust_rank(worker_state& st, const json& args) {
  // {"created": adjusted, ...}: JSON object keys are strings.
  if (!args.is_object())
    return make_error(errc::invalid_argument, "adjust_rank expects {created: adjusted}");
  auto key = std::to_string(st.rpc_rank);
  if (args.contains(key))
    st.rpc_rank = args[key].get<int>();
  return json(st.rpc_rank);
}

caf::expected<json> update_environment_variables(worker_state& st, const json& args) {
  auto env = entry_for(st, args, "update_environment_variables");
  if (!env)
    return env.error();
  if (!env->is_object())
    return make_error(errc::invalid_argument, "an environment entry must map names to values");
  for (auto& [name, value] : env->items()) {
    if (!value.is_string())
      return make_error(errc::invalid_argument,
                        "environment variable " + name + " must be a string");
    // Set before any device library starts: CUDA reads CUDA_VISIBLE_DEVICES once. setenv
    // is MT-unsafe against concurrent readers, but a worker reads its environment only
    // before its actor starts and in this actor's methods, which run one at a time.
    setenv(name.c_str(), value.get<std::string>().c_str(), 1); // NOLINT(concurrency-mt-unsafe)
  }
  return json(env->size());
}

caf::expected<json> init_worker(worker_state& st, const json& args) {
  auto kw = entry_for(st, args, "init_worker");
  if (!kw)
    return kw.error();
  try {
    st.rank = kw->at("rank").get<int>();
    st.local_rank = kw->at("local_rank").get<int>();
    st.distributed_init_method = kw->at("distributed_init_method").get<std::string>();
    st.is_driver_worker = kw->at("is_driver_worker").get<bool>();
    st.tp_size = kw->at("tensor_parallel_size").get<int>();
    st.pp_size = kw->at("pipeline_parallel_size").get<int>();
    st.device = kw->value("device", std::string("cpu"));
    st.tp_transport = kw->value("tp_transport", std::string("auto"));
    st.init_timeout_ms = kw->value("init_timeout_ms", defaults::worker_init_timeout.count());
    kw->at("model").get_to(st.model); // runtime/models/model_config.hpp
  } catch (const json::exception& e) {
    return make_error(errc::invalid_argument, std::string("init_worker: ") + e.what());
  }
  if (st.tp_size < 1 || st.pp_size < 1 || st.rank < 0 || st.rank >= st.tp_size * st.pp_size)
    return make_error(errc::invalid_argument, "init_worker: rank " + std::to_string(st.rank)
                                                + " does not fit tp x pp");
  st.initialized = true;
  spdlog::info("rank {} (local {}) on node {}: tp {}/{} pp {}/{}, init {}", st.rank,
               st.local_rank, st.node_id, st.tp_rank(), st.tp_size, st.pp_rank(), st.pp_size,
               st.distributed_init_method);
  return json(st.rank);
}

caf::expected<json> init_device(worker_state& st, const json&) {
  if (!st.initialized)
    return make_error(errc::not_ready, "init_device before init_worker");
  if (auto err = open_device(st))
    return err;
  st.device_ready = true;
  return json(st.device);
}

caf::expected<json> load_model(worker_state& st, const json&) {
  if (!st.device_ready)
    return make_error(errc::not_ready, "load_model before init_device");
  // "reference" on a cuda worker runs "reference-cuda" (model_registry::resolve).
  auto& registry = model_registry::instance();
  auto runner = registry.create(registry.resolve(st.model.name, st.device));
  if (!runner)
    return make_error(errc::invalid_argument, "unknown model '" + st.model.name + "'");
  // Actor methods may run on any thread: a CUDA runner loads on the current device.
  if (auto err = bind_device(st))
    return err;
  shard_info shard{st.tp_rank(), st.tp_size, st.pp_rank(), st.pp_size};
  if (auto err = runner->load(st.model, shard, *st.tp_group))
    return err;
  st.runner = std::move(runner);
  return json(st.model.name);
}

/// The seed's reinitialize_distributed, and the second half of recovery: every rank
/// rebuilds its TP communicator under a new generation ({"generation": g}); a rank that
/// has no device yet (a replacement worker) opens it and loads the model; the others drop
/// their KV caches, so that every rank starts from the same empty state and the host
/// re-prefills its live requests.
caf::expected<json> reinitialize_distributed(worker_state& st, const json& args) {
  if (!st.initialized)
    return make_error(errc::not_ready, "reinitialize_distributed before init_worker");
  if (!args.is_object() || !args.contains("generation")
      || !args["generation"].is_number_integer()
      || args["generation"].get<int>() <= st.comm_generation)
    return make_error(errc::invalid_argument,
                      "reinitialize_distributed expects {\"generation\": N} with N above "
                      "this rank's current generation "
                        + std::to_string(st.comm_generation));
  st.comm_generation = args["generation"].get<int>();
  // The rendezvous of the rebuilt group is bounded by the caller's deadline.
  if (args.contains("timeout_ms") && args["timeout_ms"].is_number_integer())
    st.init_timeout_ms = std::max<int64_t>(1, args["timeout_ms"].get<int64_t>());
  // The old group goes first: a peer still blocked in one of its collectives (its step's
  // input died with a lost rank) fails now instead of holding this rebuild.
  st.tp_group->close("rebuilt at generation " + std::to_string(st.comm_generation));
  if (auto err = open_device(st))
    return err;
  st.device_ready = true;
  if (st.runner && st.runner->drop_requests())
    return json{{"rank", st.rank}, {"generation", st.comm_generation}, {"reloaded", false}};
  if (auto r = load_model(st, json()); !r)
    return r.error();
  return json{{"rank", st.rank}, {"generation", st.comm_generation}, {"reloaded", true}};
}

} // namespace

method_table method_table::builtins() {
  method_table t;
  t.add("get_node_ip",
        [](worker_state& st, const json&) -> caf::expected<json> { return json(st.node_ip); });
  t.add("get_node_and_gpu_ids", [](worker_state& st, const json&) -> caf::expected<json> {
    json ids = json::array();
    for (int id : st.device_ids)
      ids.push_back(std::to_string(id));
    return json::array({st.node_id, ids});
  });
  t.add("adjust_rank", adjust_rank);
  t.add("update_environment_variables", update_environment_variables);
  t.add("init_worker", init_worker);
  t.add("init_device", init_device);
  t.add("load_model", load_model);
  t.add("reinitialize_distributed", reinitialize_distributed);
  t.add("check_health", [](worker_state& st, const json&) -> caf::expected<json> {
    return json{{"rank", st.rank}, {"ready", st.runner != nullptr}};
  });
  t.add("noop", [](worker_state&, const json&) -> caf::expected<json> { return json(); });
  t.add("echo", [](worker_state&, const json& args) -> caf::expected<json> { return args; });
  t.add("get_env", [](worker_state&, const json& args) -> caf::expected<json> {
    if (!args.is_string())
      return make_error(errc::invalid_argument, "get_env expects a variable name");
    const char* v = std::getenv(args.get<std::string>().c_str());
    return v ? json(v) : json();
  });
  t.add("rank_info", [](worker_state& st, const json&) -> caf::expected<json> {
    return json{{"rpc_rank", st.rpc_rank},
                {"rank", st.rank},
                {"local_rank", st.local_rank},
                {"is_driver_worker", st.is_driver_worker},
                {"node_id", st.node_id},
                {"device_ids", st.device_ids},
                {"bundle_index", st.bundle_index},
                {"distributed_init_method", st.distributed_init_method}};
  });
  return t;
}

void method_table::add(const std::string& name, worker_method fn) {
  methods_[name] = std::move(fn);
}

const worker_method* method_table::find(const std::string& name) const {
  auto i = methods_.find(name);
  return i == methods_.end() ? nullptr : &i->second;
}

std::vector<std::string> method_table::names() const {
  std::vector<std::string> out;
  for (const auto& kv : methods_)
    out.push_back(kv.first);
  return out;
}

void method_table::merge(const method_table& other) {
  for (const auto& kv : other.methods_)
    methods_[kv.first] = kv.second;
}

caf::expected<std::string> invoke_method(const method_table& table, worker_state& st,
                                         const std::string& name, const std::string& args) {
  const auto* fn = table.find(name);
  if (fn == nullptr)
    return make_error(errc::unknown_method, "rank " + std::to_string(st.rpc_rank) + " on node "
                                              + st.node_id + " has no method '" + name
                                              + "'; register it in the worker program");
  if (st.faults)
    st.faults->before_method(name); // fault injection: a crash armed for this method
  try {
    json parsed = args.empty() ? json() : json::parse(args);
    auto result = (*fn)(st, parsed);
    if (!result)
      return result.error();
    return result->dump();
  } catch (const std::exception& e) {
    return make_error(errc::method_failed, "rank " + std::to_string(st.rpc_rank) + " on node "
                                             + st.node_id + ": method '" + name
                                             + "' threw: " + e.what());
  }
}

} // namespace cafex

#include "chaos/scenario.hpp"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace cafex {

namespace {

using json = nlohmann::json;

struct reader {
  const std::string& origin;
  caf::error err;

  caf::error bad(const std::string& where, const std::string& why) {
    return make_error(errc::invalid_config, "scenario " + origin + ": " + where + " " + why);
  }

  static std::string field(const std::string& where, const char* key) {
    return where.empty() ? std::string(key) : where + "." + key;
  }

  bool check_keys(const json& j, const std::string& where,
                  std::initializer_list<const char*> allowed) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool ok = false;
      for (auto a : allowed)
        ok = ok || it.key() == a;
      if (!ok) {
        std::string list;
        for (auto a : allowed)
          list += (list.empty() ? "" : ", ") + std::string(a);
        err = bad(where, "has unknown key \"" + it.key() + "\" (allowed: " + list + ")");
        return false;
      }
    }
    return true;
  }

  bool get_int(const json& j, const char* key, const std::string& where, int64_t lo,
               int64_t hi, int64_t& out) {
    if (!j.contains(key))
      return true;
    if (!j[key].is_number_integer()) {
      err = bad(field(where, key), "must be an integer, got " + j[key].dump());
      return false;
    }
    auto v = j[key].get<int64_t>();
    if (v < lo || v > hi) {
      err = bad(field(where, key), "must be in [" + std::to_string(lo) + ", "
                                     + std::to_string(hi) + "], got " + std::to_string(v));
      return false;
    }
    out = v;
    return true;
  }

  template <class T>
  bool get_num(const json& j, const char* key, const std::string& where, int64_t lo,
               int64_t hi, T& out) {
    int64_t v = out;
    if (!get_int(j, key, where, lo, hi, v))
      return false;
    out = static_cast<T>(v);
    return true;
  }

  bool get_str(const json& j, const char* key, const std::string& where, std::string& out) {
    if (!j.contains(key))
      return true;
    if (!j[key].is_string()) {
      err = bad(field(where, key), "must be a string, got " + j[key].dump());
      return false;
    }
    out = j[key].get<std::string>();
    return true;
  }
};

template <class E, size_t N>
bool parse_enum(const std::string& s, const E (&all)[N], E& out) {
  for (auto x : all)
    if (s == to_string(x)) {
      out = x;
      return true;
    }
  return false;
}

using act = scenario_fault::action;
using outc = scenario_expectation::outcome;
constexpr act all_actions[] = {act::kill,        act::stop,          act::cont,
                               act::fail_method, act::delay,         act::break_collective,
                               act::cut_link,    act::restore_link,  act::kill_agent,
                               act::stop_agent,  act::continue_agent};
using phase = startup_phase;
constexpr phase all_phases[] = {phase::placement,    phase::spawn_workers,
                                phase::rank_workers, phase::update_environment,
                                phase::init_worker,  phase::init_device,
                                phase::load_model,   phase::compile_dataflow};
constexpr outc all_outcomes[] = {outc::success, outc::error, outc::start_error,
                                 outc::recovered};

template <class E, size_t N>
std::string listing(const E (&all)[N]) {
  std::string out;
  for (auto x : all)
    out += (out.empty() ? "" : ", ") + std::string(to_string(x));
  return out;
}

caf::error parse_cluster(reader& r, const json& c, scenario& s) {
  if (!r.check_keys(c, "cluster",
                    {"tp", "pp", "model", "nodes", "hosts", "on_worker_failure",
                     "heartbeat_ms", "connection_timeout_ms", "step_timeout_ms"})
      || !r.get_num(c, "tp", "cluster", 1, 64, s.tp)
      || !r.get_num(c, "pp", "cluster", 1, 64, s.pp)
      || !r.get_str(c, "model", "cluster", s.model)
      || !r.get_num(c, "hosts", "cluster", 0, 8, s.hosts)
      || !r.get_int(c, "heartbeat_ms", "cluster", 10, 60000, s.heartbeat_ms)
      || !r.get_int(c, "connection_timeout_ms", "cluster", 50, 600000, s.connection_timeout_ms)
      || !r.get_int(c, "step_timeout_ms", "cluster", 10, 600000, s.step_timeout_ms))
    return r.err;
  std::string policy = "fail";
  if (!r.get_str(c, "on_worker_failure", "cluster", policy))
    return r.err;
  if (policy != "fail" && policy != "restart")
    return r.bad("cluster.on_worker_failure",
                 "must be \"fail\" or \"restart\", got \"" + policy + "\"");
  s.restart = policy == "restart";
  if (c.contains("nodes")) {
    if (!c["nodes"].is_array())
      return r.bad("cluster.nodes", "must be a list of \"HOST:PORT\"");
    for (const auto& n : c["nodes"]) {
      if (!n.is_string())
        return r.bad("cluster.nodes", "must be a list of \"HOST:PORT\", got " + n.dump());
      s.nodes.push_back(n.get<std::string>());
    }
  }
  if (!s.nodes.empty() && s.hosts > 0)
    return r.bad("cluster.hosts", "and cluster.nodes exclude each other: simulated hosts "
                                  "start their own agents; drop one of them");
  if (s.heartbeat_ms > 0 && s.connection_timeout_ms > 0
      && s.connection_timeout_ms < 2 * s.heartbeat_ms)
    return r.bad("cluster.connection_timeout_ms", "must be at least twice heartbeat_ms, or "
                                                  "healthy idle links are dropped");
  return caf::none;
}

/// `during`: a start-up phase. Rank signals need the workers' pids (known once they are
/// ranked); the fault methods need a started executor.
caf::error parse_during(reader& r, const json& f, const std::string& where,
                        scenario_fault& x) {
  std::string name;
  if (!r.get_str(f, "during", where, name))
    return r.err;
  startup_phase p{};
  if (!parse_enum(name, all_phases, p))
    return r.bad(where + ".during", "must be a start-up phase (" + listing(all_phases)
                                      + "), got \"" + name + "\"");
  if (f.contains("at_step"))
    return r.bad(where, "has both during and at_step: a start-up fault fires in a phase, "
                        "at_ms after it began");
  if (x.by_method())
    return r.bad(where + ".action",
                 std::string(to_string(x.what))
                   + " calls a worker method, which needs a started executor: use kill, "
                     "stop, continue or a node action during start-up");
  if (!x.on_node() && p < startup_phase::update_environment)
    return r.bad(where + ".during", std::string(to_string(x.what))
                                      + " signals a rank, whose process is known "
                                        "once the workers are ranked: use "
                                        "update_environment or a later phase");
  x.during = p;
  return caf::none;
}

caf::error parse_fault(reader& r, const json& f, const std::string& where, const scenario& s,
                       scenario_fault& x) {
  if (!f.is_object())
    return r.bad(where, "must be an object");
  if (!r.check_keys(f, where,
                    {"at_step", "at_ms", "during", "action", "rank", "node", "signal", "ms",
                     "steps", "method"}))
    return r.err;
  std::string action;
  if (!r.get_str(f, "action", where, action))
    return r.err;
  if (!f.contains("action"))
    return r.bad(where + ".action", "is required (one of " + listing(all_actions) + ")");
  if (!parse_enum(action, all_actions, x.what))
    return r.bad(where + ".action",
                 "must be one of " + listing(all_actions) + ", got \"" + action + "\"");
  if (f.contains("at_step") && f.contains("at_ms"))
    return r.bad(where, "has both at_step and at_ms: a fault triggers at a step or at a time");
  int world = s.tp * s.pp;
  if (!r.get_num(f, "at_step", where, 0, s.steps - 1, x.at_step)
      || !r.get_int(f, "at_ms", where, 0, 600000, x.at_ms)
      || !r.get_num(f, "rank", where, 0, world - 1, x.rank)
      || !r.get_num(f, "signal", where, 1, 64, x.signal)
      || !r.get_num(f, "ms", where, 0, 600000, x.ms)
      || !r.get_num(f, "steps", where, 1, 100000, x.steps)
      || !r.get_str(f, "method", where, x.method))
    return r.err;
  if (f.contains("node")) {
    if (s.hosts == 0)
      return r.bad(where + ".node", "needs simulated hosts: set cluster.hosts (e.g. 2)");
    if (!r.get_num(f, "node", where, 0, s.hosts - 1, x.node))
      return r.err;
  }
  if (x.on_node() && s.hosts == 0)
    return r.bad(where + ".action",
                 std::string(to_string(x.what))
                   + " acts on a simulated host: set cluster.hosts (e.g. 2) "
                     "and the fault's node");
  if (x.what == act::fail_method && x.method != "fail" && x.method != "throw")
    return r.bad(where + ".method",
                 "must be \"fail\" or \"throw\" for fail_method, got \"" + x.method + "\"");
  if (x.what == act::delay && !f.contains("ms"))
    return r.bad(where + ".ms", "is required for delay (how long each delayed step waits)");
  if (f.contains("during"))
    return parse_during(r, f, where, x);
  return caf::none;
}

caf::error parse_expect(reader& r, const json& e, scenario& s) {
  std::string outcome;
  if (!r.check_keys(e, "expect",
                    {"outcome", "same_tokens", "error", "contains", "within_ms",
                     "later_steps_succeed"})
      || !r.get_str(e, "outcome", "expect", outcome)
      || !r.get_str(e, "error", "expect", s.expect.error)
      || !r.get_str(e, "contains", "expect", s.expect.contains)
      || !r.get_int(e, "within_ms", "expect", 1, 600000, s.expect.within_ms))
    return r.err;
  if (!parse_enum(outcome, all_outcomes, s.expect.what))
    return r.bad("expect.outcome",
                 "must be one of " + listing(all_outcomes) + ", got \"" + outcome + "\"");
  for (auto key : {"same_tokens", "later_steps_succeed"})
    if (e.contains(key) && !e[key].is_boolean())
      return r.bad(std::string("expect.") + key, "must be true or false");
  s.expect.same_tokens = e.value("same_tokens", true);
  s.expect.later_steps_succeed = e.value("later_steps_succeed", false);
  bool needs_kind = s.expect.what == outc::error || s.expect.what == outc::start_error;
  if (needs_kind && s.expect.error.empty())
    return r.bad("expect.error", "is required when the outcome is \"" + outcome
                                   + "\" (an error kind such as worker_lost)");
  if (needs_kind) {
    // One kind, or alternatives "a|b" for races the scenario cannot decide (a peer's
    // collective may fail before the driver hears that the worker died).
    std::string kinds;
    for (int c = 1; c <= static_cast<int>(errc::too_many_in_flight); ++c)
      kinds += (kinds.empty() ? "" : ", ") + std::string(to_string(static_cast<errc>(c)));
    size_t pos = 0;
    while (pos <= s.expect.error.size()) {
      auto bar = s.expect.error.find('|', pos);
      auto kind = s.expect.error.substr(pos, bar == std::string::npos ? bar : bar - pos);
      bool known = false;
      for (int c = 1; c <= static_cast<int>(errc::too_many_in_flight); ++c)
        known = known || kind == to_string(static_cast<errc>(c));
      if (!known)
        return r.bad("expect.error", "names an unknown error kind \"" + kind
                                       + "\" (kinds: " + kinds + "; alternatives: \"a|b\")");
      if (bar == std::string::npos)
        break;
      pos = bar + 1;
    }
  }
  if (!needs_kind && !s.expect.error.empty())
    return r.bad("expect.error", "only applies to the error and start_error outcomes");
  if (s.expect.what == outc::recovered && !s.restart)
    return r.bad("expect.outcome", "\"recovered\" needs cluster.on_worker_failure "
                                   "\"restart\" (with \"fail\" the executor stays failed)");
  return caf::none;
}

} // namespace

const char* to_string(scenario_fault::action a) {
  switch (a) {
    case act::kill: return "kill";
    case act::stop: return "stop";
    case act::cont: return "continue";
    case act::fail_method: return "fail_method";
    case act::delay: return "delay";
    case act::break_collective: return "break_collective";
    case act::cut_link: return "cut_link";
    case act::restore_link: return "restore_link";
    case act::kill_agent: return "kill_agent";
    case act::stop_agent: return "stop_agent";
    case act::continue_agent: return "continue_agent";
  }
  return "?";
}

const char* to_string(scenario_expectation::outcome o) {
  switch (o) {
    case outc::success: return "success";
    case outc::error: return "error";
    case outc::start_error: return "start_error";
    case outc::recovered: return "recovered";
  }
  return "?";
}

caf::expected<scenario> parse_scenario(const std::string& text, const std::string& origin) {
  reader r{origin, {}};
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    return make_error(errc::invalid_config,
                      "scenario " + origin + " is not JSON: " + e.what());
  }
  if (!j.is_object())
    return r.bad("the top level", "must be an object");
  if (!r.check_keys(j, "the top level",
                    {"name", "cluster", "steps", "requests", "step_sleep_ms", "faults",
                     "expect"}))
    return r.err;
  scenario s;
  if (!r.get_str(j, "name", "", s.name) || !r.get_num(j, "steps", "", 1, 1000, s.steps)
      || !r.get_num(j, "requests", "", 1, 64, s.requests)
      || !r.get_num(j, "step_sleep_ms", "", 0, 60000, s.step_sleep_ms))
    return r.err;
  if (!j.contains("cluster") || !j["cluster"].is_object())
    return r.bad("\"cluster\"", "is required: an object like {\"tp\": 2, \"pp\": 1}");
  if (auto err = parse_cluster(r, j["cluster"], s))
    return err;
  if (j.contains("faults")) {
    if (!j["faults"].is_array())
      return r.bad("\"faults\"", "must be a list");
    for (size_t i = 0; i < j["faults"].size(); ++i) {
      scenario_fault x;
      if (auto err = parse_fault(r, j["faults"][i], "faults[" + std::to_string(i) + "]", s, x))
        return err;
      s.faults.push_back(x);
    }
  }
  if (!j.contains("expect") || !j["expect"].is_object())
    return r.bad("\"expect\"", "is required: {\"outcome\": \"success\"} or {\"outcome\": "
                               "\"error\", \"error\": \"worker_lost\", \"within_ms\": 2000}");
  if (auto err = parse_expect(r, j["expect"], s))
    return err;
  return s;
}

caf::expected<scenario> load_scenario(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return make_error(errc::invalid_config, "cannot read scenario file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_scenario(ss.str(), path);
}

} // namespace cafex

#include "runtime/scenario.hpp"

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

  bool get_int(const json& j, const char* key, const std::string& where, int64_t lo, int64_t hi,
               int64_t& out) {
    if (!j.contains(key))
      return true;
    if (!j[key].is_number_integer()) {
      err = bad(where + "." + key, "must be an integer, got " + j[key].dump());
      return false;
    }
    auto v = j[key].get<int64_t>();
    if (v < lo || v > hi) {
      err = bad(where + "." + key, "must be in [" + std::to_string(lo) + ", "
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
      err = bad(where + "." + key, "must be a string, got " + j[key].dump());
      return false;
    }
    out = j[key].get<std::string>();
    return true;
  }
};

bool parse_action(const std::string& s, scenario_fault::action& out) {
  using a = scenario_fault::action;
  for (auto x : {a::kill, a::stop, a::cont, a::fail_method, a::delay})
    if (s == to_string(x)) {
      out = x;
      return true;
    }
  return false;
}

} // namespace

const char* to_string(scenario_fault::action a) {
  switch (a) {
    case scenario_fault::action::kill: return "kill";
    case scenario_fault::action::stop: return "stop";
    case scenario_fault::action::cont: return "continue";
    case scenario_fault::action::fail_method: return "fail_method";
    case scenario_fault::action::delay: return "delay";
  }
  return "?";
}

caf::expected<scenario> parse_scenario(const std::string& text, const std::string& origin) {
  reader r{origin, {}};
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    return make_error(errc::invalid_config, "scenario " + origin + " is not JSON: " + e.what());
  }
  if (!j.is_object())
    return r.bad("the top level", "must be an object");
  if (!r.check_keys(j, "the top level", {"name", "cluster", "steps", "step_sleep_ms", "faults",
                                         "expect"}))
    return r.err;
  scenario s;
  if (!r.get_str(j, "name", "", s.name) || !r.get_num(j, "steps", "", 1, 1000, s.steps)
      || !r.get_num(j, "step_sleep_ms", "", 0, 60000, s.step_sleep_ms))
    return r.err;
  if (!j.contains("cluster") || !j["cluster"].is_object())
    return r.bad("\"cluster\"", "is required: an object like {\"tp\": 2, \"pp\": 1}");
  const auto& c = j["cluster"];
  if (!r.check_keys(c, "cluster", {"tp", "pp", "model", "nodes"})
      || !r.get_num(c, "tp", "cluster", 1, 64, s.tp) || !r.get_num(c, "pp", "cluster", 1, 64, s.pp)
      || !r.get_str(c, "model", "cluster", s.model))
    return r.err;
  if (c.contains("nodes")) {
    if (!c["nodes"].is_array())
      return r.bad("cluster.nodes", "must be a list of \"HOST:PORT\"");
    for (const auto& n : c["nodes"]) {
      if (!n.is_string())
        return r.bad("cluster.nodes", "must be a list of \"HOST:PORT\", got " + n.dump());
      s.nodes.push_back(n.get<std::string>());
    }
  }
  int world = s.tp * s.pp;
  if (j.contains("faults")) {
    if (!j["faults"].is_array())
      return r.bad("\"faults\"", "must be a list");
    for (size_t i = 0; i < j["faults"].size(); ++i) {
      const auto& f = j["faults"][i];
      auto where = "faults[" + std::to_string(i) + "]";
      if (!f.is_object())
        return r.bad(where, "must be an object");
      if (!r.check_keys(f, where, {"at_step", "action", "rank", "signal", "ms", "method"}))
        return r.err;
      scenario_fault x;
      std::string action;
      if (!r.get_str(f, "action", where, action))
        return r.err;
      if (!parse_action(action, x.what))
        return r.bad(where + ".action", "must be kill, stop, continue, fail_method or delay, got \""
                                          + action + "\"");
      if (!r.get_num(f, "at_step", where, 0, s.steps - 1, x.at_step)
          || !r.get_num(f, "rank", where, 0, world - 1, x.rank)
          || !r.get_num(f, "signal", where, 1, 64, x.signal)
          || !r.get_num(f, "ms", where, 0, 600000, x.ms) || !r.get_str(f, "method", where, x.method))
        return r.err;
      if (x.what == scenario_fault::action::fail_method && x.method != "throw"
          && x.method != "fail_on")
        return r.bad(where + ".method", "must be \"throw\" or \"fail_on\" for fail_method");
      s.faults.push_back(x);
    }
  }
  if (!j.contains("expect") || !j["expect"].is_object())
    return r.bad("\"expect\"", "is required: {\"outcome\": \"success\"} or {\"outcome\": "
                                "\"error\", \"error\": \"worker_lost\", \"within_ms\": 2000}");
  const auto& e = j["expect"];
  std::string outcome;
  if (!r.check_keys(e, "expect", {"outcome", "same_tokens", "error", "contains", "within_ms"})
      || !r.get_str(e, "outcome", "expect", outcome) || !r.get_str(e, "error", "expect", s.expect.error)
      || !r.get_str(e, "contains", "expect", s.expect.contains)
      || !r.get_int(e, "within_ms", "expect", 1, 600000, s.expect.within_ms))
    return r.err;
  if (outcome != "success" && outcome != "error")
    return r.bad("expect.outcome", "must be \"success\" or \"error\", got \"" + outcome + "\"");
  s.expect.success = outcome == "success";
  if (e.contains("same_tokens")) {
    if (!e["same_tokens"].is_boolean())
      return r.bad("expect.same_tokens", "must be true or false");
    s.expect.same_tokens = e["same_tokens"].get<bool>();
  }
  if (!s.expect.success && s.expect.error.empty())
    return r.bad("expect.error", "is required when the outcome is \"error\" (e.g. worker_lost)");
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

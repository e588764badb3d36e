// agent_status_json: what `cafex status` shows of one node agent.
#include <chrono>

#include <nlohmann/json.hpp>

#include "actors/node_agent_actor.hpp"

namespace cafex {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

std::string agent_status_json(const node_agent_state& st) {
  const auto& info = st.opts.info;
  nlohmann::json devices = nlohmann::json::array();
  const auto free = st.ledger.free_units();
  for (size_t i = 0; i < info.device_ids.size(); ++i) {
    const int id = info.device_ids[i];
    nlohmann::json reserved = nlohmann::json::array();
    for (const auto& [rid, r] : st.ledger.held())
      for (const auto& c : r.claims)
        if (c.device_id == id) {
          auto name = st.driver_names.find(rid);
          auto when = st.reserved_at.find(rid);
          reserved.push_back(
            {{"reservation", rid},
             {"driver", name != st.driver_names.end() ? name->second : r.owner},
             {"share", static_cast<double>(c.units) / 10000.0},
             {"bundle", c.bundle_index},
             {"for_s", when != st.reserved_at.end() ? seconds_since(when->second) : 0.0}});
        }
    devices.push_back(
      {{"id", id},
       {"free", i < free.size() ? static_cast<double>(free[i]) / 10000.0 : 1.0},
       {"reserved", reserved}});
  }
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& [spawn_id, c] : st.children) {
    auto name = st.driver_names.find(c.req.reservation);
    workers.push_back({{"rank", c.req.created_rank},
                       {"bundle", c.req.bundle_index},
                       {"pid", static_cast<int64_t>(c.proc.pid())},
                       {"state", c.registered ? "running" : "starting"},
                       {"uptime_s", seconds_since(c.started)},
                       {"driver", name != st.driver_names.end() ? name->second : ""}});
  }
  nlohmann::json j{{"node_id", info.node_id},
                   {"ip", info.ip},
                   {"version", info.version},
                   {"resource", info.resource_name},
                   {"device_kind", info.device_kind},
                   {"devices", devices},
                   {"workers", workers}};
  return j.dump();
}

} // namespace cafex

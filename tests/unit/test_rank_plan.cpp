// Every rule of the seed's _init_workers_ray rank planning, one test case each.
#include <doctest/doctest.h>

#include "runtime/error.hpp"
#include "runtime/plan/rank_plan.hpp"

using namespace cafex;

namespace {

// One report per (ip, node, gpu) triple, in creation order.
struct w {
  std::string ip;
  std::string node;
  std::vector<std::string> gpus;
};

std::vector<worker_report> reports(const std::vector<w>& ws) {
  std::vector<worker_report> out;
  for (size_t i = 0; i < ws.size(); ++i)
    out.push_back(
      {static_cast<int>(i), static_cast<int>(i), ws[i].ip, ws[i].node, ws[i].gpus});
  return out;
}

rank_plan plan(const std::vector<w>& ws, const std::string& driver_ip, int tp, int pp,
               const env_map& env = {}) {
  auto r = plan_ranks(reports(ws), driver_ip, {tp, pp}, env, 29500);
  REQUIRE_MESSAGE(r, describe(r.error()));
  return *r;
}

std::vector<int> created_order(const rank_plan& p) {
  std::vector<int> out;
  for (const auto& x : p.workers)
    out.push_back(x.created_rank);
  return out;
}

const std::string A = "10.0.0.1", B = "10.0.0.2", C = "10.0.0.3";

} // namespace

TEST_CASE("workers on the driver node come first") {
  auto p = plan({{B, "b", {"0"}}, {A, "a", {"0"}}, {B, "b", {"1"}}, {A, "a", {"1"}}}, A, 4, 1);
  CHECK(created_order(p) == std::vector<int>{1, 3, 0, 2});
  CHECK(p.workers[0].ip == A);
  for (int i = 0; i < 4; ++i)
    CHECK(p.workers[i].rank == i);
}

TEST_CASE("then nodes with fewer workers") {
  // Driver on A with 1 worker; B has 2, C has 1: A, C, B.
  auto p = plan({{B, "b", {"0"}}, {B, "b", {"1"}}, {C, "c", {"0"}}, {A, "a", {"0"}}}, A, 2, 2);
  CHECK(created_order(p) == std::vector<int>{3, 2, 0, 1});
}

TEST_CASE("then IP address as a string, as the seed does") {
  // "10.0.0.10" < "10.0.0.9" as strings although 9 < 10 numerically.
  auto p = plan({{"10.0.0.9", "n9", {"0"}}, {"10.0.0.10", "n10", {"0"}}, {A, "a", {"0"}}}, A,
                3, 1);
  CHECK(created_order(p) == std::vector<int>{2, 1, 0});
}

TEST_CASE("the sort is stable: one node's workers keep creation order") {
  auto p = plan({{B, "b", {"3"}},
                 {A, "a", {"0"}},
                 {B, "b", {"1"}},
                 {A, "a", {"2"}},
                 {B, "b", {"0"}},
                 {A, "a", {"1"}}},
                A, 6, 1);
  CHECK(created_order(p) == std::vector<int>{1, 3, 5, 0, 2, 4});
}

TEST_CASE("the rerank map sends created ranks to adjusted ranks") {
  auto p = plan({{B, "b", {"0"}}, {A, "a", {"0"}}, {B, "b", {"1"}}, {A, "a", {"1"}}}, A, 2, 2);
  CHECK(p.rerank == std::map<int, int>{{0, 2}, {1, 0}, {2, 3}, {3, 1}});
  for (const auto& x : p.workers)
    CHECK(p.rerank.at(x.created_rank) == x.rank);
}

TEST_CASE("16 GPUs: ids sort as integers, 10 after 9") {
  std::vector<w> ws;
  for (const char* g :
       {"10", "9", "1", "15", "0", "11", "2", "3", "4", "5", "6", "7", "8", "12", "13", "14"})
    ws.push_back({A, "a", {g}});
  auto p = plan(ws, A, 16, 1);
  CHECK(p.workers[0].env.at("CUDA_VISIBLE_DEVICES")
        == "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15");
  CHECK(p.workers[0].gpu_ids == std::vector<int>{10});
}

TEST_CASE("a worker's own GPU list is converted and sorted numerically") {
  auto p = plan({{A, "a", {"10", "9", " 2"}}}, A, 1, 1);
  CHECK(p.workers[0].gpu_ids == std::vector<int>{2, 9, 10});
  CHECK(p.workers[0].env.at("CUDA_VISIBLE_DEVICES") == "2,9,10");
}

TEST_CASE("two node ids on one IP is the seed's unique-IP error") {
  auto r = plan_ranks(reports({{A, "a", {"0"}}, {A, "a2", {"1"}}}), A, {2, 1}, {}, 29500);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_config);
  CHECK(describe(r.error())
        == "invalid_config: Every node should have a unique IP address. Got 2 nodes with "
           "node ids ['a', 'a2'] and 1 unique IP addresses {'10.0.0.1'}. Please check your "
           "network configuration. If you set CAFEX_HOST_IP/--host-ip, make sure it is "
           "unique for each node.");
}

TEST_CASE("a driver node with no rank is named as the cause, not as non-unique IPs") {
  // The seed counts the driver's IP among the nodes' and reports non-unique IPs here.
  auto r = plan_ranks(reports({{B, "b", {"0"}}}), A, {1, 1}, {}, 29500);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_config);
  CHECK(describe(r.error()).rfind("invalid_config: no rank is placed on the driver's node "
                                  "(10.0.0.1): the workers are on ['b']",
                                  0)
        == 0);
  CHECK(describe(r.error()).find("unique IP") == std::string::npos);
}

TEST_CASE("a non-integer GPU id is an error naming the worker") {
  auto r = plan_ranks(reports({{A, "a", {"0"}}, {A, "a", {"GPU-1"}}}), A, {2, 1}, {}, 29500);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_argument);
  auto t = describe(r.error());
  CHECK(t.find("'GPU-1'") != std::string::npos);
  CHECK(t.find("node a") != std::string::npos);
  CHECK_FALSE(plan_ranks(reports({{A, "a", {""}}}), A, {1, 1}, {}, 29500));
}

TEST_CASE("CUDA_VISIBLE_DEVICES per node holds all of that node's GPUs, sorted") {
  auto p = plan({{A, "a", {"3"}}, {B, "b", {"1"}}, {A, "a", {"1"}}, {B, "b", {"0"}}}, A, 2, 2);
  for (const auto& x : p.workers)
    CHECK(x.env.at("CUDA_VISIBLE_DEVICES") == (x.node_id == "a" ? "1,3" : "0,1"));
}

TEST_CASE("GPU-sharing workers list their GPU once") {
  auto p = plan({{A, "a", {"0"}}, {A, "a", {"0"}}}, A, 2, 1);
  CHECK(p.workers[1].env.at("CUDA_VISIBLE_DEVICES") == "0");
}

TEST_CASE("copied variables join the device variable, which wins") {
  env_map copy{{"NCCL_DEBUG", "INFO"}, {"CUDA_VISIBLE_DEVICES", "7"}};
  auto p = plan({{A, "a", {"0"}}, {A, "a", {"1"}}}, A, 2, 1, copy);
  CHECK(p.workers[1].env == env_map{{"CUDA_VISIBLE_DEVICES", "0,1"}, {"NCCL_DEBUG", "INFO"}});
  auto q = plan_ranks(reports({{A, "a", {"0"}}}), A, {1, 1}, copy, 29500,
                      "HIP_VISIBLE_DEVICES");
  REQUIRE(q);
  CHECK(q->workers[0].env.at("HIP_VISIBLE_DEVICES") == "0");
  CHECK(q->workers[0].env.at("CUDA_VISIBLE_DEVICES") == "7");
}

TEST_CASE("local rank is the position of the rank within its node") {
  auto p = plan({{B, "b", {"0"}},
                 {A, "a", {"0"}},
                 {B, "b", {"1"}},
                 {A, "a", {"1"}},
                 {B, "b", {"2"}},
                 {C, "c", {"0"}}},
                A, 3, 2);
  // Order: A (2 workers), C (1), B (3).
  CHECK(created_order(p) == std::vector<int>{1, 3, 5, 0, 2, 4});
  std::vector<int> local;
  for (const auto& x : p.workers)
    local.push_back(x.local_rank);
  CHECK(local == std::vector<int>{0, 1, 0, 0, 1, 2});
}

TEST_CASE("is_driver_worker is rank % tp == 0") {
  auto p = plan({{A, "a", {"0"}},
                 {A, "a", {"1"}},
                 {A, "a", {"2"}},
                 {A, "a", {"3"}},
                 {A, "a", {"4"}},
                 {A, "a", {"5"}}},
                A, 3, 2);
  std::vector<bool> drv;
  for (const auto& x : p.workers)
    drv.push_back(x.is_driver_worker);
  CHECK(drv == std::vector<bool>{true, false, false, true, false, false});
}

TEST_CASE("one node uses loopback, several use the driver IP") {
  auto one = plan({{A, "a", {"0"}}, {A, "a", {"1"}}}, A, 2, 1);
  CHECK(one.init_host == "127.0.0.1");
  CHECK(one.init_port == 29500);
  CHECK(one.distributed_init_method == "tcp://127.0.0.1:29500");
  auto two = plan({{A, "a", {"0"}}, {B, "b", {"0"}}}, A, 2, 1);
  CHECK(two.init_host == A);
  CHECK(two.distributed_init_method == "tcp://10.0.0.1:29500");
}

TEST_CASE("pp_tp grid: rank = pp * tp_size + tp") {
  std::vector<w> ws;
  for (int i = 0; i < 8; ++i)
    ws.push_back({i < 4 ? A : B, i < 4 ? "a" : "b", {std::to_string(i % 4)}});
  CHECK(plan(ws, A, 4, 2).pp_tp_ranks
        == std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}});
  CHECK(plan(ws, A, 2, 4).pp_tp_ranks
        == std::vector<std::vector<int>>{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
  CHECK(plan(ws, A, 8, 1).pp_tp_ranks
        == std::vector<std::vector<int>>{{0, 1, 2, 3, 4, 5, 6, 7}});
  CHECK(plan(ws, A, 1, 8).pp_tp_ranks.size() == 8);
}

TEST_CASE("world size must match the number of reports") {
  auto r = plan_ranks(reports({{A, "a", {"0"}}}), A, {2, 1}, {}, 29500);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_argument);
  CHECK(describe(r.error()).find("world size is 2") != std::string::npos);
}

TEST_CASE("parallel sizes below 1 are refused with a clear error") {
  CHECK_FALSE(validate(parallel_config{1, 1}));
  auto tp = validate(parallel_config{0, 1});
  CHECK(code_of(tp) == errc::invalid_argument);
  CHECK(describe(tp).find("--tp") != std::string::npos);
  auto pp = validate(parallel_config{1, -2});
  CHECK(describe(pp).find("--pp") != std::string::npos);
  CHECK(validate(parallel_config{100000, 100000}));
  CHECK(parallel_config{4, 2}.world_size() == 8);
}

TEST_CASE("reports out of created order and bad ports are refused") {
  auto rs = reports({{A, "a", {"0"}}, {A, "a", {"1"}}});
  std::swap(rs[0], rs[1]);
  CHECK_FALSE(plan_ranks(rs, A, {2, 1}, {}, 29500));
  CHECK_FALSE(plan_ranks(reports({{A, "a", {"0"}}}), A, {1, 1}, {}, 0));
  CHECK_FALSE(plan_ranks(reports({{A, "a", {"0"}}}), A, {1, 1}, {}, 70000));
}

TEST_CASE("bundle index and ip travel with the worker") {
  auto rs = reports({{B, "b", {"0"}}, {A, "a", {"0"}}});
  rs[0].bundle_index = 7;
  rs[1].bundle_index = 3;
  auto p = plan_ranks(rs, A, {2, 1}, {}, 29500);
  REQUIRE(p);
  CHECK(p->workers[0].bundle_index == 3);
  CHECK(p->workers[1].bundle_index == 7);
  CHECK(p->workers[1].ip == B);
  CHECK(p->workers[1].node_id == "b");
}

TEST_CASE(
  "a rank moved to another node in recovery keeps its rank and gets that node's devices") {
  auto p = plan({{A, "na", {"0"}}, {A, "na", {"1"}}, {B, "nb", {"0"}}, {B, "nb", {"1"}}}, A, 2,
                2, {{"VLLM_X", "1"}});
  // Node nb is lost; rank 3 moves to node nc (new bundle on its GPU 5).
  auto m = plan_moved_rank(p, 3, "nc", C, 5);
  REQUIRE_MESSAGE(m, describe(m.error()));
  CHECK(m->rank == 3);
  CHECK(m->node_id == "nc");
  CHECK(m->ip == C);
  CHECK(m->gpu_ids == std::vector<int>{5});
  CHECK(m->local_rank == 0);
  CHECK(m->env.at("CUDA_VISIBLE_DEVICES") == "5");
  CHECK(m->env.at("VLLM_X") == "1");
  // Onto node na, beside ranks 0 and 1: listed after them, the node's GPUs plus its own.
  auto n = plan_moved_rank(p, 3, "na", A, 2);
  REQUIRE(n);
  CHECK(n->local_rank == 2);
  CHECK(n->env.at("CUDA_VISIBLE_DEVICES") == "0,1,2");
  CHECK_FALSE(plan_moved_rank(p, 9, "nc", C, 0));
  // Every worker on one node: the store is on loopback, so no rank can leave it.
  auto one = plan({{A, "na", {"0"}}, {A, "na", {"1"}}}, A, 2, 1);
  auto bad = plan_moved_rank(one, 1, "nb", B, 0);
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::invalid_config);
}

// Placement strategies and the seed's bundle-index selection.
#include <doctest/doctest.h>

#include "runtime/error.hpp"
#include "runtime/plan/placement.hpp"

using namespace cafex;

namespace {

// Driver on b (listed second) so "driver node first" is visible; c is the biggest.
cluster_spec three_nodes() {
  return cluster_spec{"10.0.0.2",
                      {{"a", "10.0.0.1", {0, 1}},
                       {"b", "10.0.0.2", {1, 0}},
                       {"c", "10.0.0.3", {3, 2, 1, 0}}}};
}

std::vector<std::pair<std::string, int>> where(const std::vector<bundle>& bs) {
  std::vector<std::pair<std::string, int>> out;
  for (size_t i = 0; i < bs.size(); ++i) {
    CHECK(bs[i].index == static_cast<int>(i));
    out.emplace_back(bs[i].node_id, bs[i].gpu_id);
  }
  return out;
}

using P = std::vector<std::pair<std::string, int>>;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string fail_text(const cluster_spec& c, placement_request r) {
  auto res = place_bundles(c, r);
  REQUIRE_FALSE(res);
  CHECK(code_of(res.error()) == errc::placement_failed);
  return describe(res.error());
}

} // namespace

TEST_CASE("strategy names parse and print") {
  for (auto s : {placement_strategy::pack, placement_strategy::spread,
                 placement_strategy::strict_pack, placement_strategy::strict_spread}) {
    auto p = parse_placement_strategy(to_string(s));
    REQUIRE(p);
    CHECK(*p == s);
  }
  CHECK(*parse_placement_strategy("STRICT_SPREAD") == placement_strategy::strict_spread);
  auto bad = parse_placement_strategy("packed");
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::invalid_argument);
  CHECK(contains(describe(bad.error()), "pack, spread, strict_pack, strict_spread"));
}

TEST_CASE("pack: driver node first, then the biggest node, GPUs in numeric order") {
  auto r = place_bundles(three_nodes(), {5, 1.0, placement_strategy::pack});
  REQUIRE(r);
  CHECK(where(*r) == P{{"b", 0}, {"b", 1}, {"c", 0}, {"c", 1}, {"c", 2}});
  CHECK((*r)[0].ip == "10.0.0.2");
  CHECK((*r)[2].ip == "10.0.0.3");
}

TEST_CASE("pack: equal-sized nodes keep file order") {
  cluster_spec c{"10.0.0.3",
                 {{"a", "10.0.0.1", {0}}, {"b", "10.0.0.2", {0}}, {"c", "10.0.0.3", {0}}}};
  auto r = place_bundles(c, {3, 1.0, placement_strategy::pack});
  REQUIRE(r);
  CHECK(where(*r) == P{{"c", 0}, {"a", 0}, {"b", 0}});
}

TEST_CASE("spread: round robin from the driver node, skipping full nodes") {
  auto r = place_bundles(three_nodes(), {7, 1.0, placement_strategy::spread});
  REQUIRE(r);
  CHECK(where(*r) == P{{"b", 0}, {"a", 0}, {"c", 0}, {"b", 1}, {"a", 1}, {"c", 1}, {"c", 2}});
}

TEST_CASE("strict_pack: all on the driver node, or a clear failure") {
  auto r = place_bundles(three_nodes(), {2, 1.0, placement_strategy::strict_pack});
  REQUIRE(r);
  CHECK(where(*r) == P{{"b", 0}, {"b", 1}});
  auto t = fail_text(three_nodes(), {3, 1.0, placement_strategy::strict_pack});
  CHECK(contains(t, "Cannot provide a placement group of 3 bundles {GPU: 1} with "
                    "strategy strict_pack"));
  CHECK(contains(t, "driver's node \"b\""));
  CHECK(contains(t, "missing 1 bundle(s)"));
  CHECK(contains(t, "add nodes/GPUs, lower --tp/--pp, or change --strategy"));
}

TEST_CASE("strict_spread: one bundle per node, or a clear failure") {
  auto r = place_bundles(three_nodes(), {3, 1.0, placement_strategy::strict_spread});
  REQUIRE(r);
  CHECK(where(*r) == P{{"b", 0}, {"a", 0}, {"c", 0}});
  auto t = fail_text(three_nodes(), {4, 1.0, placement_strategy::strict_spread});
  CHECK(contains(t, "strict_spread needs 4 distinct nodes"));
  CHECK(contains(t, "has 3 (b, a, c)"));
  CHECK(contains(t, "missing 1 node(s)"));
}

TEST_CASE("strict_spread skips nodes without GPUs") {
  cluster_spec c{"10.0.0.1",
                 {{"a", "10.0.0.1", {0}}, {"cpu", "10.0.0.2", {}}, {"c", "10.0.0.3", {5}}}};
  auto r = place_bundles(c, {2, 1.0, placement_strategy::strict_spread});
  REQUIRE(r);
  CHECK(where(*r) == P{{"a", 0}, {"c", 5}});
}

TEST_CASE("bundle 0 is on the driver node under every strategy") {
  for (auto s : {placement_strategy::pack, placement_strategy::spread,
                 placement_strategy::strict_pack, placement_strategy::strict_spread}) {
    auto r = place_bundles(three_nodes(), {1, 1.0, s});
    REQUIRE(r);
    CHECK((*r)[0].node_id == "b");
  }
}

TEST_CASE("fractional 0.5: two bundles share a GPU, which fills before the next") {
  cluster_spec c{"10.0.0.1", {{"a", "10.0.0.1", {1, 0}}, {"b", "10.0.0.2", {0}}}};
  auto r = place_bundles(c, {5, 0.5, placement_strategy::pack});
  REQUIRE(r);
  CHECK(where(*r) == P{{"a", 0}, {"a", 0}, {"a", 1}, {"a", 1}, {"b", 0}});
  auto s = place_bundles(c, {4, 0.5, placement_strategy::spread});
  REQUIRE(s);
  CHECK(where(*s) == P{{"a", 0}, {"b", 0}, {"a", 0}, {"b", 0}});
}

TEST_CASE("fractional 0.1: ten bundles fit one GPU exactly, 0.4 leaves 0.2 unused") {
  cluster_spec c{"10.0.0.1", {{"a", "10.0.0.1", {0, 1}}}};
  auto r = place_bundles(c, {20, 0.1, placement_strategy::strict_pack});
  REQUIRE(r);
  CHECK((*r)[9].gpu_id == 0);
  CHECK((*r)[10].gpu_id == 1);
  CHECK(place_bundles(c, {4, 0.4, placement_strategy::pack}));
  auto t = fail_text(c, {5, 0.4, placement_strategy::pack});
  CHECK(contains(t, "{GPU: 0.4}"));
  CHECK(contains(t, "holding 4 such bundles"));
}

TEST_CASE("too few GPUs: the message says what is free and what is missing") {
  auto t = fail_text(three_nodes(), {10, 1.0, placement_strategy::pack});
  CHECK(contains(t, "Cannot provide a placement group of 10 bundles {GPU: 1} with "
                    "strategy pack: the cluster has 8 free GPUs (b: 2, a: 2, c: 4)"));
  CHECK(contains(t, "missing 2 bundle(s)"));
  CHECK(contains(t, "add nodes/GPUs, lower --tp/--pp, or change --strategy"));
  CHECK(contains(fail_text(three_nodes(), {9, 1.0, placement_strategy::spread}),
                 "missing 1 bundle(s)"));
}

TEST_CASE("bad requests are invalid arguments") {
  for (placement_request r : {placement_request{0, 1.0, placement_strategy::pack},
                              placement_request{1, 0.0, placement_strategy::pack},
                              placement_request{1, 1.5, placement_strategy::pack},
                              placement_request{1, -1.0, placement_strategy::pack}}) {
    auto res = place_bundles(three_nodes(), r);
    REQUIRE_FALSE(res);
    CHECK(code_of(res.error()) == errc::invalid_argument);
  }
}

TEST_CASE("a driver node without GPUs cannot hold bundle 0") {
  cluster_spec c{"10.0.0.1", {{"a", "10.0.0.1", {}}, {"b", "10.0.0.2", {0, 1}}}};
  auto t = fail_text(c, {1, 1.0, placement_strategy::pack});
  CHECK(contains(t, "driver's node \"a\" (10.0.0.1) has no GPU"));
  cluster_spec none{"10.0.0.9", {{"a", "10.0.0.1", {0}}}};
  auto r = place_bundles(none, {1, 1.0, placement_strategy::pack});
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_config);
}

TEST_CASE("bundle indices: default is the first world_size bundles") {
  auto bs = *place_bundles(three_nodes(), {6, 1.0, placement_strategy::pack});
  auto r = select_bundle_indices(bs, 4, nullptr);
  REQUIRE(r);
  CHECK(*r == std::vector<int>{0, 1, 2, 3});
  auto few = select_bundle_indices(bs, 7, nullptr);
  REQUIRE_FALSE(few);
  CHECK(code_of(few.error()) == errc::invalid_argument);
}

TEST_CASE("bundle indices: the user's list is used as given") {
  auto bs = *place_bundles(three_nodes(), {6, 1.0, placement_strategy::pack});
  std::vector<int> user{5, 0, 3};
  auto r = select_bundle_indices(bs, 3, &user);
  REQUIRE(r);
  CHECK(*r == user);
}

TEST_CASE("bundle indices: wrong size shows both sizes") {
  auto bs = *place_bundles(three_nodes(), {4, 1.0, placement_strategy::pack});
  std::vector<int> user{0, 1, 2};
  auto r = select_bundle_indices(bs, 4, &user);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_argument);
  auto t = describe(r.error());
  CHECK(contains(t, "bundle_indices=[0, 1, 2]"));
  CHECK(contains(t, "world_size=4"));
}

TEST_CASE("bundle indices: duplicates and out-of-range values are refused") {
  auto bs = *place_bundles(three_nodes(), {4, 1.0, placement_strategy::pack});
  std::vector<int> dup{0, 1, 1, 2};
  auto d = select_bundle_indices(bs, 4, &dup);
  REQUIRE_FALSE(d);
  CHECK(code_of(d.error()) == errc::invalid_argument);
  CHECK(contains(describe(d.error()), "duplicate"));
  std::vector<int> far{0, 1, 2, 4};
  auto f = select_bundle_indices(bs, 4, &far);
  REQUIRE_FALSE(f);
  CHECK(contains(describe(f.error()), "bundle index 4 is out of range"));
  CHECK(contains(describe(f.error()), "4 bundles (0..3)"));
  std::vector<int> neg{0, 1, 2, -1};
  CHECK_FALSE(select_bundle_indices(bs, 4, &neg));
  CHECK_FALSE(select_bundle_indices(bs, 0, nullptr));
}

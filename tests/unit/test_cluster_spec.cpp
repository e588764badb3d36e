// Cluster file parsing: the happy path and every validation the dry run relies on.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "runtime/plan/cluster_spec.hpp"
#include "runtime/error.hpp"

using namespace cafex;

namespace {

// The error text of a failed parse, after checking its code.
std::string fail_text(const std::string& json) {
  auto r = parse_cluster_json(json);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_config);
  return describe(r.error());
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("a two-node cluster parses, gpu ids as ints or integer strings") {
  auto r = parse_cluster_json(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0,1,2,3]},
    {"node_id":"b","ip":"10.0.0.2","gpu_ids":["3","10","9"]}]})");
  REQUIRE(r);
  CHECK(r->driver_ip == "10.0.0.1");
  REQUIRE(r->nodes.size() == 2);
  CHECK(r->nodes[0].node_id == "a");
  CHECK(r->nodes[0].gpu_ids == std::vector<int>{0, 1, 2, 3});
  CHECK(r->nodes[1].gpu_ids == std::vector<int>{3, 10, 9});
  REQUIRE(find_driver_node(*r) != nullptr);
  CHECK(find_driver_node(*r)->node_id == "a");
}

TEST_CASE("a node without GPUs is allowed when it is not the driver's") {
  auto r = parse_cluster_json(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]},
    {"node_id":"cpu","ip":"10.0.0.9","gpu_ids":[]}]})");
  REQUIRE(r);
  CHECK(r->nodes[1].gpu_ids.empty());
}

TEST_CASE("malformed JSON reports the byte position") {
  auto t = fail_text(R"({"driver_ip":"10.0.0.1", "nodes": [)");
  CHECK(contains(t, "malformed JSON at byte"));
}

TEST_CASE("missing or mistyped fields are named") {
  CHECK(contains(fail_text("[]"), "top level"));
  CHECK(contains(fail_text(R"({"nodes":[]})"), "driver_ip"));
  CHECK(contains(fail_text(R"({"driver_ip":1,"nodes":[]})"), "driver_ip"));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1"})"), "\"nodes\""));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":{}})"), "\"nodes\""));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"ip":"10.0.0.1","gpu_ids":[0]}]})"),
                 "nodes[0]: \"node_id\""));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","gpu_ids":[0]}]})"),
                 "node_id \"a\""));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1"}]})"),
                 "gpu_ids"));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0.5]}]})"),
                 "gpu_ids"));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":["x"]}]})"),
                 "\"x\""));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[7]})"), "nodes[0]"));
}

TEST_CASE("an empty node list is refused") {
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[]})"), "empty"));
}

TEST_CASE("duplicate node ids are refused") {
  auto t = fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]},
    {"node_id":"a","ip":"10.0.0.2","gpu_ids":[0]}]})");
  CHECK(contains(t, "\"a\" is already used by nodes[0]"));
}

TEST_CASE("two nodes with one IP are refused, naming both") {
  auto t = fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]},
    {"node_id":"b","ip":"10.0.0.1","gpu_ids":[0]}]})");
  CHECK(contains(t, "\"a\" and \"b\" share the IP 10.0.0.1"));
}

TEST_CASE("negative and duplicate gpu ids are refused") {
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0,-1]}]})"),
                 "negative"));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":["-2"]}]})"),
                 "negative"));
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[1,"1"]}]})"),
                 "gpu id 1 is listed twice"));
}

TEST_CASE("the driver ip must be a node's, and that node needs a GPU") {
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.5","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]}]})"),
                 "not the ip of any node"));
  auto t = fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[]},
    {"node_id":"b","ip":"10.0.0.2","gpu_ids":[0]}]})");
  CHECK(contains(t, "driver's node \"a\""));
  CHECK(contains(t, "has no GPU"));
}

TEST_CASE("IPv4 text is checked") {
  CHECK(is_ipv4("10.0.0.1"));
  CHECK(is_ipv4("255.255.255.255"));
  CHECK(is_ipv4("0.0.0.0"));
  for (const char* bad :
       {"", "10.0.0", "10.0.0.1.2", "256.0.0.1", "10.0.0.01", "a.b.c.d", "10.0.0.", ".10.0.0",
        "10..0.1", " 10.0.0.1", "10.0.0.-1", "1000.0.0.1", "localhost"})
    CHECK_MESSAGE(!is_ipv4(bad), bad);
  CHECK(contains(fail_text(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.300","gpu_ids":[0]}]})"),
                 "not an IPv4 address"));
  CHECK(contains(fail_text(R"({"driver_ip":"host","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]}]})"),
                 "driver_ip"));
}

TEST_CASE("load_cluster_file names the path") {
  auto missing = load_cluster_file("/nonexistent/cluster.json");
  REQUIRE_FALSE(missing);
  CHECK(code_of(missing.error()) == errc::invalid_config);
  CHECK(contains(describe(missing.error()), "/nonexistent/cluster.json"));

  char name[] = "/tmp/cafex_cluster_XXXXXX";
  int fd = mkstemp(name);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out(name);
    out << R"({"driver_ip":"10.0.0.1",
               "nodes":[{"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]}]})";
  }
  auto ok = load_cluster_file(name);
  CHECK(ok);
  {
    std::ofstream out(name);
    out << R"({"driver_ip":"10.0.0.1","nodes":[]})";
  }
  auto bad = load_cluster_file(name);
  REQUIRE_FALSE(bad);
  CHECK(contains(describe(bad.error()), std::string("'") + name + "': \"nodes\" is empty"));
  std::remove(name);
}

// Runs the real `cafex plan` binary (CAFEX_BIN) with a controlled environment and checks
// its exit code, stdout and stderr separately.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace {

struct result {
  int rc = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// A temp file removed at scope exit.
struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text = "") {
    char name[] = "/tmp/cafex_plan_test_XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
    path = name;
  }
  ~temp_file() { std::remove(path.c_str()); }
};

std::string cafex_bin() {
  const char* bin = std::getenv("CAFEX_BIN");
  REQUIRE_MESSAGE(bin != nullptr, "CAFEX_BIN is not set; run through ctest");
  return bin;
}

// Runs `cafex plan args...` with exactly `env` as its environment. Output goes to files,
// not pipes, so a chatty child can never block on a full pipe.
result run_plan(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  temp_file out, err;
  std::vector<std::string> argv_s{cafex_bin(), "plan"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s = env;
  for (auto& e : env_s)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int o = ::open(out.path.c_str(), O_WRONLY | O_TRUNC);
    int e = ::open(err.path.c_str(), O_WRONLY | O_TRUNC);
    if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0)
      ::_exit(127);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out.path);
  r.err = slurp(err.path);
  return r;
}

const char* two_nodes = R"({"driver_ip":"10.0.0.1","nodes":[
  {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0,1]},
  {"node_id":"b","ip":"10.0.0.2","gpu_ids":["1","0"]}]})";

const std::vector<std::string> test_env{"PATH=/usr/bin:/bin", "HOME=/nonexistent",
                                        "HF_TOKEN=hf_secret", "NCCL_DEBUG=INFO",
                                        "NCCL_NVLS_ENABLE=0", "CUDA_VISIBLE_DEVICES=7",
                                        "LOCAL_RANK=3",       "CAFEX_HOST_IP=1.2.3.4",
                                        "UNRELATED=1"};

void check_bad_input(const result& r, const std::string& hint) {
  CHECK_MESSAGE(r.rc == 2, hint);
  CHECK_MESSAGE(r.out.empty(), (hint + " stdout: " + r.out));
  CHECK_MESSAGE(r.err.rfind("error: ", 0) == 0, (hint + " stderr: " + r.err));
  REQUIRE_MESSAGE(!r.err.empty(), hint);
  CHECK_MESSAGE(r.err.find('\n') == r.err.size() - 1, (hint + " stderr: " + r.err));
}

} // namespace

TEST_CASE("two nodes, four GPUs, tp 2 x pp 2: the exact JSON plan") {
  temp_file cluster(two_nodes);
  auto r = run_plan({"--cluster", cluster.path, "--tp", "2", "--pp", "2", "--port", "29555",
                     "--json"},
                    test_env);
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  CHECK(r.err.empty());
  // One JSON object, one line.
  CHECK(r.out.find('\n') == r.out.size() - 1);
  auto j = nlohmann::json::parse(r.out);
  nlohmann::json env = {{"CUDA_VISIBLE_DEVICES", "0,1"},
                        {"HF_TOKEN", "<redacted>"},
                        {"NCCL_DEBUG", "INFO"},
                        {"NCCL_NVLS_ENABLE", "0"}};
  auto worker = [&](int rank, const char* node, const char* ip, int gpu, int local) {
    return nlohmann::json{{"rank", rank},
                          {"created_rank", rank},
                          {"bundle_index", rank},
                          {"node_id", node},
                          {"ip", ip},
                          {"gpu_ids", {gpu}},
                          {"local_rank", local},
                          {"is_driver_worker", rank % 2 == 0},
                          {"env", env}};
  };
  nlohmann::json expected = {
    {"world_size", 4},
    {"tensor_parallel_size", 2},
    {"pipeline_parallel_size", 2},
    {"placement_strategy", "pack"},
    {"distributed_init_method", "tcp://10.0.0.1:29555"},
    {"bundles",
     {{{"index", 0}, {"node_id", "a"}, {"gpu_id", 0}},
      {{"index", 1}, {"node_id", "a"}, {"gpu_id", 1}},
      {{"index", 2}, {"node_id", "b"}, {"gpu_id", 0}},
      {{"index", 3}, {"node_id", "b"}, {"gpu_id", 1}}}},
    {"workers",
     {worker(0, "a", "10.0.0.1", 0, 0), worker(1, "a", "10.0.0.1", 1, 1),
      worker(2, "b", "10.0.0.2", 0, 0), worker(3, "b", "10.0.0.2", 1, 1)}},
    {"pp_tp_workers", {{0, 1}, {2, 3}}}};
  CHECK_MESSAGE(j == expected, j.dump(2));
  CHECK(r.out.find("hf_secret") == std::string::npos);
}

TEST_CASE("bundle indices that leave the driver's node without a rank name that cause") {
  temp_file cluster(two_nodes);
  // pack: bundles 0, 1 on a (the driver's 10.0.0.1), 2, 3 on b; ranks on 3 and 2 only.
  auto r = run_plan({"--cluster", cluster.path, "--tp", "2", "--bundles", "4",
                     "--bundle-indices", "3,2"},
                    {"PATH=/usr/bin"});
  INFO(r.err);
  CHECK(r.rc != 0);
  CHECK(r.err.find("no rank is placed on the driver's node (10.0.0.1)") != std::string::npos);
  CHECK(r.err.find("unique IP") == std::string::npos);
}

TEST_CASE("user bundle indices and spread: created order differs from rank order") {
  temp_file cluster(two_nodes);
  auto r = run_plan({"--cluster", cluster.path, "--tensor-parallel-size", "4", "--json",
                     "--strategy", "spread", "--bundle-indices", "3,2,1,0", "--port", "1000"},
                    {"PATH=/usr/bin"});
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  auto j = nlohmann::json::parse(r.out);
  // spread: bundles a0 b0 a1 b1; workers created on bundles 3,2,1,0 = b1 a1 b0 a0;
  // driver node a first, creation order kept: created 1 (bundle 2), created 3 (bundle 0).
  std::vector<int> created, bundle_of;
  for (const auto& w : j["workers"]) {
    created.push_back(w["created_rank"]);
    bundle_of.push_back(w["bundle_index"]);
    CHECK(w["env"] == nlohmann::json{{"CUDA_VISIBLE_DEVICES", "0,1"}});
  }
  CHECK(created == std::vector<int>{1, 3, 0, 2});
  CHECK(bundle_of == std::vector<int>{2, 0, 3, 1});
  CHECK(j["pp_tp_workers"] == nlohmann::json{{0, 1, 2, 3}});
  CHECK(j["bundles"][1]["node_id"] == "b");
}

TEST_CASE("one node uses loopback; a free port is chosen without --port") {
  temp_file cluster(R"({"driver_ip":"10.0.0.1","nodes":[
    {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0,1,2,3]},
    {"node_id":"b","ip":"10.0.0.2","gpu_ids":[0,1,2,3]}]})");
  auto r = run_plan({"--cluster", cluster.path, "--tp", "4", "--json"}, {"PATH=/usr/bin"});
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  auto method = nlohmann::json::parse(r.out)["distributed_init_method"].get<std::string>();
  REQUIRE(method.rfind("tcp://127.0.0.1:", 0) == 0);
  int port = std::stoi(method.substr(16));
  CHECK(port >= 1);
  CHECK(port <= 65535);
}

TEST_CASE("CAFEX_NON_CARRY_OVER_ENV_VARS keeps a variable on the driver") {
  temp_file cluster(two_nodes);
  auto r = run_plan({"--cluster", cluster.path, "--json", "--port", "1000"},
                    {"NCCL_DEBUG=INFO", "NCCL_NVLS_ENABLE=0",
                     "CAFEX_NON_CARRY_OVER_ENV_VARS=NCCL_DEBUG"});
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  auto env = nlohmann::json::parse(r.out)["workers"][0]["env"];
  CHECK(env.count("NCCL_DEBUG") == 0);
  CHECK(env["NCCL_NVLS_ENABLE"] == "0");
}

TEST_CASE("the table output names the plan; --help prints usage") {
  temp_file cluster(two_nodes);
  auto r = run_plan({"--cluster", cluster.path, "--pp", "4", "--port", "29555"},
                    {"HF_TOKEN=hf_secret"});
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  CHECK(r.out.find("tcp://10.0.0.1:29555") != std::string::npos);
  CHECK(r.out.find("HF_TOKEN=<redacted>") != std::string::npos);
  CHECK(r.out.find("hf_secret") == std::string::npos);
  auto h = run_plan({"--help"}, {});
  CHECK(h.rc == 0);
  CHECK(h.out.find("--bundle-indices") != std::string::npos);
}

TEST_CASE("every invalid input exits 2 with one error line and no stdout") {
  temp_file good(two_nodes);
  const std::vector<std::pair<std::string, std::string>> bad_files{
    {"malformed JSON", R"({"driver_ip": "10.0.0.1", "nodes": [)"},
    {"a misspelt top-level key", R"({"driver_ip":"10.0.0.1","gpus_per_node":2,"nodes":[
       {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]}]})"},
    {"a misspelt node key", R"({"driver_ip":"10.0.0.1","nodes":[
       {"node_id":"a","ip":"10.0.0.1","gpu_id":[0]}]})"},
    {"two nodes one IP", R"({"driver_ip":"10.0.0.1","nodes":[
       {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]},
       {"node_id":"b","ip":"10.0.0.1","gpu_ids":[0]}]})"},
    {"driver without GPU", R"({"driver_ip":"10.0.0.1","nodes":[
       {"node_id":"a","ip":"10.0.0.1","gpu_ids":[]},
       {"node_id":"b","ip":"10.0.0.2","gpu_ids":[0]}]})"},
    {"driver ip not a node", R"({"driver_ip":"10.0.0.9","nodes":[
       {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]}]})"},
    {"empty nodes", R"({"driver_ip":"10.0.0.1","nodes":[]})"},
    {"bad ip", R"({"driver_ip":"10.0.0.1","nodes":[
       {"node_id":"a","ip":"10.0.0.1","gpu_ids":[0]},
       {"node_id":"b","ip":"10.0.0","gpu_ids":[0]}]})"},
    {"empty file", ""}};
  for (const auto& [name, text] : bad_files) {
    temp_file f(text);
    check_bad_input(run_plan({"--cluster", f.path, "--json"}, {}), name);
  }
  const std::vector<std::vector<std::string>> bad_args{
    {"--tp", "0"},
    {"--pp", "-1"},
    {"--tp", "abc"},
    {"--tp", "2", "--pp", "4"}, // 8 ranks, 4 GPUs
    {"--tp", "4", "--bundle-indices", "0,1"},
    {"--tp", "4", "--bundle-indices", "0,1,1,2"},
    {"--tp", "4", "--bundle-indices", "0,1,2,4"},
    {"--tp", "2", "--bundle-indices", "0,x"},
    {"--tp", "2", "--bundle-indices", ""},
    {"--tp", "4", "--bundles", "3"},
    {"--strategy", "best"},
    {"--tp", "3", "--strategy", "strict_pack"},
    {"--tp", "3", "--strategy", "strict_spread"},
    {"--gpus-per-worker", "0"},
    {"--gpus-per-worker", "1.5"},
    {"--port", "70000"},
    {"--frobnicate"},
    {"--json=1"},
    {"stray"},
    {"--tp"}};
  for (const auto& extra : bad_args) {
    std::vector<std::string> args{"--cluster", good.path, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string hint;
    for (const auto& a : extra)
      hint += a + " ";
    check_bad_input(run_plan(args, {}), hint);
  }
  check_bad_input(run_plan({"--tp", "2", "--json"}, {}), "missing --cluster");
  check_bad_input(run_plan({"--cluster", "/nonexistent/cluster.json"}, {}), "missing file");
}

// The deployment files the repository keeps: the Kubernetes DaemonSet parses as the
// YAML subset it uses (block mappings and lists, two-space indents, no tabs) and holds
// the fields a node agent needs; the Slurm recipe and the namespace script name the
// flags that exist.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace {

std::string source_file(const std::string& rel) {
  return std::string(CAFEX_SOURCE_DIR) + "/" + rel;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in, "cannot read " << path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Flattens "a:\n  b: c" into {"a.b": "c"}; list items add "[]" to the path. Fails the
// test on tabs, odd indentation or lines that are neither "key: value" nor "- ...".
std::multimap<std::string, std::string> flatten_yaml(const std::string& text) {
  std::multimap<std::string, std::string> out;
  std::vector<std::pair<int, std::string>> stack; // indent, key
  std::istringstream in(text);
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    INFO("line " << no << ": " << line);
    REQUIRE(line.find('\t') == std::string::npos);
    auto first = line.find_first_not_of(' ');
    if (first == std::string::npos || line[first] == '#')
      continue;
    int indent = static_cast<int>(first);
    REQUIRE(indent % 2 == 0);
    std::string body = line.substr(first);
    bool item = body.rfind("- ", 0) == 0;
    while (!stack.empty() && stack.back().first >= indent)
      stack.pop_back();
    if (item) {
      stack.emplace_back(indent, "[]");
      body = body.substr(2);
      indent += 2;
    }
    std::string path;
    for (const auto& s2 : stack)
      path += s2.second + ".";
    auto colon = body.find(": ");
    bool opens = !body.empty() && body.back() == ':' && colon == std::string::npos;
    if (!opens && colon == std::string::npos) {
      out.emplace(path.substr(0, path.size() - 1), body); // a scalar list item
      continue;
    }
    auto key = opens ? body.substr(0, body.size() - 1) : body.substr(0, colon);
    REQUIRE_FALSE(key.empty());
    REQUIRE(key.find(' ') == std::string::npos);
    if (opens) {
      stack.emplace_back(indent, key);
      continue;
    }
    auto value = body.substr(colon + 2);
    if (auto hash = value.find(" #"); hash != std::string::npos)
      value = value.substr(0, value.find_last_not_of(' ', hash) + 1);
    out.emplace(path + key, value);
  }
  return out;
}

bool has(const std::multimap<std::string, std::string>& m, const std::string& key,
         const std::string& needle) {
  auto range = m.equal_range(key);
  for (auto i = range.first; i != range.second; ++i)
    if (i->second.find(needle) != std::string::npos)
      return true;
  return false;
}

} // namespace

TEST_CASE("the Kubernetes DaemonSet parses and runs an authenticated node agent") {
  auto y = flatten_yaml(slurp(source_file("examples/multi_node/daemonset.yaml")));
  CHECK(has(y, "apiVersion", "apps/v1"));
  CHECK(has(y, "kind", "DaemonSet"));
  CHECK(has(y, "spec.template.spec.hostNetwork", "true"));
  bool agent_cmd = false, secret = false;
  for (const auto& [k, v] : y) {
    agent_cmd = agent_cmd
                || (v.find("cafex node --listen") != std::string::npos
                    && v.find("--token-file") != std::string::npos);
    secret = secret || (k.find("secretName") != std::string::npos && v == "cafex-token");
  }
  CHECK(agent_cmd);
  CHECK(secret);
}

TEST_CASE("the Slurm recipe and the namespace script use flags that exist") {
  for (auto f :
       {"examples/multi_node/slurm_srun.sh", "examples/multi_node/run_namespaces.sh"}) {
    auto text = slurp(source_file(f));
    bool starts_agents = text.find("\" node --listen") != std::string::npos
                         || text.find("$CAFEX node --listen") != std::string::npos;
    CHECK(starts_agents);
    CHECK(text.find("--token-file") != std::string::npos);
    CHECK(text.find("--gpus auto") == std::string::npos); // not implemented
  }
}

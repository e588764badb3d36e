// Bad checkpoints are refused at load, on every rank, with an error that names the file
// and the tensor (or the config.json field and its value), never a crash: truncated
// files, corrupt headers, missing tensors, shapes that do not match config.json,
// unsupported dtypes, architectures, rope types and quantised checkpoints. Also: both
// spellings of the rotary configuration give the same frequencies.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/models/hf/hf_config.hpp"
#include "runtime/models/hf/llama_model.hpp"
#include "runtime/models/hf/safetensors.hpp"
#include "transport/fake_collective.hpp"

using namespace cafex;
namespace fs = std::filesystem;

namespace {

/// A copy of a committed fixture in a temporary directory, removed at the end.
struct scratch_checkpoint {
  fs::path dir;

  explicit scratch_checkpoint(const std::string& fixture) {
    std::string tmpl = (fs::temp_directory_path() / "cafex-hf-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    fs::copy(fs::path(CAFEX_SOURCE_DIR) / "tests/hf/fixtures" / fixture, dir,
             fs::copy_options::recursive);
    fs::remove(dir / "expected.json");
  }
  ~scratch_checkpoint() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  nlohmann::json read(const std::string& file) const {
    std::ifstream in{dir / file};
    return nlohmann::json::parse(in);
  }
  void write(const std::string& file, const nlohmann::json& j) const {
    std::ofstream{dir / file} << j.dump(2);
  }
  void write_bytes(const std::string& file, const std::string& bytes) const {
    std::ofstream{dir / file, std::ios::binary} << bytes;
  }
  std::string bytes(const std::string& file) const {
    std::ifstream in{dir / file, std::ios::binary};
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

/// A safetensors file from a header object and raw data.
std::string safetensors_bytes(const nlohmann::json& header, const std::string& data) {
  auto text = header.dump();
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
  return out + text + data;
}

/// Splits a safetensors file into its header and data.
std::pair<nlohmann::json, std::string> split(const std::string& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = n << 8 | static_cast<uint8_t>(file[static_cast<size_t>(i)]);
  return {nlohmann::json::parse(file.substr(8, n)), file.substr(8 + n)};
}

/// Loads every rank of a TP group of `tp` ranks (pp 1); returns each rank's error text.
std::vector<std::string> load_all(const fs::path& dir, int tp) {
  model_config cfg;
  cfg.name = "hf";
  cfg.path = dir.string();
  fake_collective_group group{tp};
  std::vector<std::string> errors;
  for (int r = 0; r < tp; ++r) {
    hf::llama_model m;
    auto err = m.load(cfg, shard_info{r, tp, 0, 1}, group.endpoint(r));
    errors.push_back(err ? describe(err) : std::string{});
  }
  return errors;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// One rank's error on `dir`, which must name every one of `parts`.
void refused(const fs::path& dir, const std::vector<std::string>& parts, int tp = 2) {
  auto errors = load_all(dir, tp);
  for (const auto& e : errors) {
    INFO(e);
    REQUIRE_FALSE(e.empty());
    for (const auto& p : parts)
      CHECK_MESSAGE(has(e, p), "missing '" << p << "'");
  }
}

} // namespace

TEST_CASE("a good fixture loads on every rank") {
  scratch_checkpoint c{"llama_gqa"};
  for (const auto& e : load_all(c.dir, 2))
    CHECK_MESSAGE(e.empty(), e);
}

TEST_CASE("a truncated safetensors file is refused, naming the file") {
  scratch_checkpoint c{"llama_gqa"};
  auto file = c.bytes("model.safetensors");
  c.write_bytes("model.safetensors", file.substr(0, file.size() / 2));
  refused(c.dir, {"model.safetensors", "truncated"});
  c.write_bytes("model.safetensors", file.substr(0, 5));
  refused(c.dir, {"model.safetensors", "too short"});
  c.write_bytes("model.safetensors", "");
  refused(c.dir, {"model.safetensors", "too short"});
}

TEST_CASE("a corrupt header is refused, naming the file") {
  scratch_checkpoint c{"llama_gqa"};
  auto file = c.bytes("model.safetensors");
  auto garbled = file;
  for (size_t i = 8; i < 40; ++i)
    garbled[i] = '\x7f';
  c.write_bytes("model.safetensors", garbled);
  refused(c.dir, {"model.safetensors", "header is not JSON"});
  auto huge = file;
  huge[7] = '\x40'; // header length 2^62
  c.write_bytes("model.safetensors", huge);
  refused(c.dir, {"model.safetensors", "header claims"});
  auto [header, data] = split(file);
  auto bad_offsets = header;
  bad_offsets["model.norm.weight"]["data_offsets"] = {0, data.size() + 4};
  c.write_bytes("model.safetensors", safetensors_bytes(bad_offsets, data));
  refused(c.dir, {"model.safetensors", "model.norm.weight", "data_offsets"});
  auto bad_shape = header;
  bad_shape["model.norm.weight"]["shape"] = {-1};
  c.write_bytes("model.safetensors", safetensors_bytes(bad_shape, data));
  refused(c.dir, {"model.norm.weight", "not a size"});
  c.write_bytes("model.safetensors", safetensors_bytes(nlohmann::json::array(), data));
  refused(c.dir, {"model.safetensors", "not a JSON object"});
}

TEST_CASE("a missing tensor is refused, naming it (and its file when sharded)") {
  scratch_checkpoint c{"llama_gqa"};
  auto [header, data] = split(c.bytes("model.safetensors"));
  header.erase("model.layers.1.mlp.down_proj.weight");
  c.write_bytes("model.safetensors", safetensors_bytes(header, data));
  refused(c.dir, {"model.layers.1.mlp.down_proj.weight", "model.safetensors"});

  scratch_checkpoint s{"llama3_tied_sharded"};
  auto index = s.read("model.safetensors.index.json");
  auto file = index["weight_map"]["model.layers.2.self_attn.k_proj.weight"].get<std::string>();
  auto fewer = index;
  fewer["weight_map"].erase("model.layers.2.self_attn.k_proj.weight");
  s.write("model.safetensors.index.json", fewer);
  refused(s.dir, {"model.layers.2.self_attn.k_proj.weight"});
  s.write("model.safetensors.index.json", index);
  fs::remove(s.dir / file);
  refused(s.dir, {file, "re-download"});
  fs::remove(s.dir / "model.safetensors.index.json");
  refused(s.dir, {"safetensors"});
}

TEST_CASE("a shape that does not match config.json is refused, naming both") {
  scratch_checkpoint c{"llama_gqa"};
  auto cfg = c.read("config.json");
  cfg["intermediate_size"] = 64;
  c.write("config.json", cfg);
  refused(c.dir, {"mlp", "[96, 48]", "[64, 48]"}, 1);
}

TEST_CASE("an unsupported dtype (a quantised tensor) is refused by name") {
  scratch_checkpoint c{"llama_gqa"};
  auto [header, data] = split(c.bytes("model.safetensors"));
  auto& t = header["model.norm.weight"];
  t["dtype"] = "I8";
  t["shape"] = {t["data_offsets"][1].get<int64_t>() - t["data_offsets"][0].get<int64_t>()};
  c.write_bytes("model.safetensors", safetensors_bytes(header, data));
  refused(c.dir, {"model.norm.weight", "dtype I8 is not supported"});
}

TEST_CASE("config.json outside what the runner implements is refused by field and value") {
  auto base = [] {
    std::ifstream in{fs::path(CAFEX_SOURCE_DIR) / "tests/hf/fixtures/llama_gqa/config.json"};
    return nlohmann::json::parse(in);
  };
  auto why = [](const nlohmann::json& j) {
    auto r = hf::parse_hf_config(j);
    return r ? std::string{} : describe(r.error());
  };
  CHECK(why(base()).empty());
  auto j = base();
  j["architectures"] = {"GPTNeoXForCausalLM"};
  CHECK(has(why(j), "GPTNeoXForCausalLM"));
  j = base();
  j["quantization_config"] = {{"quant_method", "awq"}};
  CHECK(has(why(j), "quantization_config"));
  CHECK(has(why(j), "awq"));
  j = base();
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  CHECK(has(why(j), "yarn"));
  j = base();
  j["hidden_act"] = "gelu";
  CHECK(has(why(j), "hidden_act"));
  j = base();
  j["mlp_bias"] = true;
  CHECK(has(why(j), "mlp_bias"));
  j = base();
  j.erase("num_hidden_layers");
  CHECK(has(why(j), "num_hidden_layers"));
  j = base();
  j["hidden_size"] = -4;
  CHECK(has(why(j), "hidden_size"));
  j = base();
  j["num_key_value_heads"] = 3;
  CHECK(has(why(j), "num_key_value_heads"));
  CHECK_FALSE(hf::parse_hf_config(nlohmann::json::array()));
}

TEST_CASE("old rope_theta/rope_scaling and new rope_parameters give the same rope") {
  std::ifstream in{fs::path(CAFEX_SOURCE_DIR)
                   / "tests/hf/fixtures/llama3_tied_sharded/config.json"};
  auto fresh = nlohmann::json::parse(in);
  REQUIRE(fresh.contains("rope_parameters"));
  auto params = fresh["rope_parameters"];
  REQUIRE(params["rope_type"] == "llama3");
  auto old = fresh;
  old.erase("rope_parameters");
  old["rope_theta"] = params["rope_theta"];
  auto scaling = params;
  scaling.erase("rope_theta");
  old["rope_scaling"] = scaling;
  auto a = hf::parse_hf_config(fresh);
  auto b = hf::parse_hf_config(old);
  REQUIRE_MESSAGE(a, describe(a.error()));
  REQUIRE_MESSAGE(b, describe(b.error()));
  CHECK(b->rope.type == hf::rope_config::kind::llama3);
  CHECK(hf::rope_inv_freq(a->rope, a->head_dim) == hf::rope_inv_freq(b->rope, b->head_dim));
  // Llama 3's scaling changes the low frequencies.
  auto plain = a->rope;
  plain.type = hf::rope_config::kind::plain;
  CHECK(hf::rope_inv_freq(plain, a->head_dim) != hf::rope_inv_freq(a->rope, a->head_dim));
}

TEST_CASE("a TP size that cannot shard the model is refused with the sizes") {
  scratch_checkpoint c{"llama_gqa"}; // 4 heads, 2 KV heads, intermediate 96
  refused(c.dir, {"--tp 3", "num_attention_heads 4"}, 3);
  // tp 4 > 2 KV heads: replicated, as vLLM does.
  for (const auto& e : load_all(c.dir, 4))
    CHECK_MESSAGE(e.empty(), e);
}

TEST_CASE("an empty tensor opens and converts to nothing (fuzz_safetensors' first find)") {
  scratch_checkpoint c{"llama_gqa"};
  c.write_bytes(
    "empty.safetensors",
    safetensors_bytes({{"z", {{"dtype", "F32"}, {"shape", {0, 5}}, {"data_offsets", {0, 0}}}}},
                      ""));
  auto f = hf::safetensors_file::open((c.dir / "empty.safetensors").string());
  REQUIRE_MESSAGE(f, describe(f.error()));
  const auto* t = (*f)->find("z");
  REQUIRE(t != nullptr);
  CHECK(t->numel() == 0);
  hf::weight_buffer out;
  hf::to_float(t->type, t->data, out.data(), 0);
  hf::checkpoint::read_block(*t, 0, 0, 0, 5, out);
  CHECK(out.empty());
}

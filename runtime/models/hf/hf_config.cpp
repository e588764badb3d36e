#include "runtime/models/hf/hf_config.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace cafex::hf {

namespace {

caf::error bad(const std::string& what) {
  return make_error(errc::invalid_config, "config.json: " + what);
}

/// A positive integer field; `fallback` < 0: required.
caf::expected<int64_t> positive(const nlohmann::json& j, const char* key,
                                int64_t fallback = -1) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback < 0)
      return bad(
        fmt::format("\"{}\" is missing: a {} checkpoint needs it", key, "decoder-only"));
    return fallback;
  }
  const auto& v = j[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    return bad(fmt::format("\"{}\" is {}, not a positive integer", key, v.dump()));
  return v.get<int64_t>();
}

caf::expected<double> number(const nlohmann::json& j, const char* key, double fallback) {
  if (!j.contains(key) || j[key].is_null())
    return fallback;
  if (!j[key].is_number())
    return bad(fmt::format("\"{}\" is {}, not a number", key, j[key].dump()));
  return j[key].get<double>();
}

caf::expected<bool> flag(const nlohmann::json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null())
    return fallback;
  if (!j[key].is_boolean())
    return bad(fmt::format("\"{}\" is {}, not true or false", key, j[key].dump()));
  return j[key].get<bool>();
}

caf::error add_token_ids(const nlohmann::json& v, const char* where,
                         std::vector<int32_t>& out) {
  auto add = [&](const nlohmann::json& x) -> caf::error {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
      return make_error(errc::invalid_config,
                        fmt::format("{}: \"eos_token_id\" holds {}, not a token id", where,
                                    x.dump()));
    auto id = static_cast<int32_t>(x.get<int64_t>());
    for (auto have : out)
      if (have == id)
        return caf::none;
    out.push_back(id);
    return caf::none;
  };
  if (v.is_null())
    return caf::none;
  if (v.is_array()) {
    for (const auto& x : v)
      if (auto err = add(x))
        return err;
    return caf::none;
  }
  return add(v);
}

/// The rope settings: transformers 5's "rope_parameters" {rope_type, rope_theta, ...} or
/// the older "rope_theta" with an optional "rope_scaling".
caf::error parse_rope(const nlohmann::json& j, hf_config& cfg) {
  nlohmann::json params = nlohmann::json::object();
  const char* where = "rope_scaling";
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    params = j["rope_parameters"];
    where = "rope_parameters";
    if (!params.is_object())
      return bad("\"rope_parameters\" is not an object");
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    params = j["rope_scaling"];
    if (!params.is_object())
      return bad("\"rope_scaling\" is not an object");
  }
  auto theta = number(params, "rope_theta", 0.0);
  if (!theta)
    return theta.error();
  if (*theta <= 0) {
    auto top = number(j, "rope_theta", 10000.0);
    if (!top)
      return top.error();
    theta = *top;
  }
  if (*theta <= 0)
    return bad(fmt::format("rope_theta {} must be positive", *theta));
  cfg.rope.theta = *theta;
  std::string type = "default";
  for (const char* key : {"rope_type", "type"})
    if (params.contains(key) && params[key].is_string()) {
      type = params[key].get<std::string>();
      break;
    }
  if (type == "default")
    return caf::none;
  if (type != "llama3")
    return bad(fmt::format("\"{}\" has rope_type \"{}\": only \"default\" and \"llama3\" "
                           "are supported",
                           where, type));
  cfg.rope.type = rope_config::kind::llama3;
  auto factor = number(params, "factor", -1);
  auto low = number(params, "low_freq_factor", -1);
  auto high = number(params, "high_freq_factor", -1);
  auto orig = positive(params, "original_max_position_embeddings", cfg.max_position);
  for (auto* e : {&factor, &low, &high})
    if (!*e)
      return e->error();
  if (!orig)
    return orig.error();
  if (*factor <= 0 || *low <= 0 || *high <= *low)
    return bad(fmt::format("\"{}\" (llama3) needs factor > 0 and high_freq_factor > "
                           "low_freq_factor > 0, not factor {}, low_freq_factor {}, "
                           "high_freq_factor {}",
                           where, *factor, *low, *high));
  cfg.rope.factor = *factor;
  cfg.rope.low_freq_factor = *low;
  cfg.rope.high_freq_factor = *high;
  cfg.rope.original_max_position = *orig;
  return caf::none;
}

} // namespace

const char* to_string(architecture a) {
  switch (a) {
    case architecture::llama: return "llama";
    case architecture::mistral: return "mistral";
    case architecture::qwen2: return "qwen2";
  }
  return "?";
}

caf::expected<hf_config> parse_hf_config(const nlohmann::json& j) {
  if (!j.is_object())
    return bad("is not a JSON object");
  hf_config cfg;
  if (!j.contains("architectures") || !j["architectures"].is_array()
      || j["architectures"].size() != 1 || !j["architectures"][0].is_string())
    return bad("\"architectures\" must name one architecture, such as "
               "[\"LlamaForCausalLM\"]");
  cfg.arch_name = j["architectures"][0].get<std::string>();
  if (cfg.arch_name == "LlamaForCausalLM")
    cfg.arch = architecture::llama;
  else if (cfg.arch_name == "MistralForCausalLM")
    cfg.arch = architecture::mistral;
  else if (cfg.arch_name == "Qwen2ForCausalLM")
    cfg.arch = architecture::qwen2;
  else
    return bad("\"architectures\" is [\"" + cfg.arch_name
               + "\"]: supported are LlamaForCausalLM, MistralForCausalLM and "
                 "Qwen2ForCausalLM");
  if (j.contains("quantization_config") && !j["quantization_config"].is_null())
    return bad("\"quantization_config\" is set ("
               + j["quantization_config"].value("quant_method", std::string("?"))
               + "): quantised checkpoints are not supported; use a float32, bfloat16 or "
                 "float16 one");
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    return bad("\"hidden_act\" is " + j["hidden_act"].dump() + ": only \"silu\" is supported");
  auto vocab = positive(j, "vocab_size");
  auto hidden = positive(j, "hidden_size");
  auto inter = positive(j, "intermediate_size");
  auto layers = positive(j, "num_hidden_layers");
  auto heads = positive(j, "num_attention_heads");
  for (auto* e : {&vocab, &hidden, &inter, &layers, &heads})
    if (!*e)
      return e->error();
  auto kv = positive(j, "num_key_value_heads", *heads);
  if (!kv)
    return kv.error();
  if (*hidden % *heads != 0 && (!j.contains("head_dim") || j["head_dim"].is_null()))
    return bad(fmt::format("hidden_size {} is not divisible by num_attention_heads {} and "
                           "no head_dim is given",
                           *hidden, *heads));
  auto head_dim = positive(j, "head_dim", *hidden / *heads);
  auto max_pos = positive(j, "max_position_embeddings", 2048);
  auto eps = number(j, "rms_norm_eps", 1e-6);
  auto tie = flag(j, "tie_word_embeddings", false);
  auto attn_bias = flag(j, "attention_bias", false);
  auto mlp_bias = flag(j, "mlp_bias", false);
  for (auto* e : {&head_dim, &max_pos})
    if (!*e)
      return e->error();
  if (!eps)
    return eps.error();
  for (auto* e : {&tie, &attn_bias, &mlp_bias})
    if (!*e)
      return e->error();
  if (*heads % *kv != 0)
    return bad(fmt::format("num_attention_heads {} is not a multiple of "
                           "num_key_value_heads {}",
                           *heads, *kv));
  if (*layers > 100000 || *heads > 100000)
    return bad("num_hidden_layers or num_attention_heads is implausibly large");
  if (*mlp_bias)
    return bad("\"mlp_bias\" is true: MLP biases are not supported");
  if (*eps <= 0)
    return bad(fmt::format("rms_norm_eps {} must be positive", *eps));
  cfg.vocab_size = *vocab;
  cfg.hidden_size = *hidden;
  cfg.intermediate_size = *inter;
  cfg.num_layers = static_cast<int>(*layers);
  cfg.num_heads = static_cast<int>(*heads);
  cfg.num_kv_heads = static_cast<int>(*kv);
  cfg.head_dim = *head_dim;
  cfg.max_position = *max_pos;
  cfg.rms_norm_eps = *eps;
  cfg.tie_word_embeddings = *tie;
  cfg.qkv_bias = cfg.arch == architecture::qwen2 || *attn_bias;
  cfg.o_bias = cfg.arch != architecture::qwen2 && *attn_bias;
  if (cfg.arch == architecture::mistral) {
    if (j.contains("sliding_window") && !j["sliding_window"].is_null()) {
      auto w = positive(j, "sliding_window");
      if (!w)
        return w.error();
      cfg.sliding_window = *w;
    }
  } else if (cfg.arch == architecture::qwen2) {
    auto sliding = flag(j, "use_sliding_window", false);
    if (!sliding)
      return sliding.error();
    if (*sliding)
      return bad("\"use_sliding_window\" is true: Qwen2's per-layer sliding window is not "
                 "supported");
  }
  if (auto err = parse_rope(j, cfg))
    return err;
  if (j.contains("eos_token_id"))
    if (auto err = add_token_ids(j["eos_token_id"], "config.json", cfg.eos_token_ids))
      return err;
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
    cfg.bos_token_id = j["bos_token_id"].get<int32_t>();
  for (auto id : cfg.eos_token_ids)
    if (id >= cfg.vocab_size)
      return bad(
        fmt::format("eos_token_id {} is outside the vocabulary of {}", id, cfg.vocab_size));
  return cfg;
}

caf::error merge_generation_config(const nlohmann::json& j, hf_config& cfg) {
  if (!j.is_object())
    return make_error(errc::invalid_config, "generation_config.json is not a JSON object");
  if (j.contains("eos_token_id"))
    return add_token_ids(j["eos_token_id"], "generation_config.json", cfg.eos_token_ids);
  return caf::none;
}

caf::expected<hf_config> load_hf_config(const std::string& dir) {
  auto read = [](const std::string& path, nlohmann::json& out, bool required) -> caf::error {
    std::ifstream in{path};
    if (!in) {
      if (!required)
        return caf::none;
      return make_error(errc::invalid_config, "cannot read " + path
                                                + ": point --model at a Hugging Face "
                                                  "checkpoint directory (it holds "
                                                  "config.json and *.safetensors)");
    }
    std::stringstream text;
    text << in.rdbuf();
    try {
      out = nlohmann::json::parse(text.str());
    } catch (const std::exception& e) {
      return make_error(errc::invalid_config, path + " is not JSON: " + e.what());
    }
    return caf::none;
  };
  nlohmann::json cj;
  if (auto err = read(dir + "/config.json", cj, true))
    return err;
  auto cfg = parse_hf_config(cj);
  if (!cfg)
    return make_error(errc::invalid_config, dir + "/" + describe(cfg.error()));
  nlohmann::json gj;
  if (auto err = read(dir + "/generation_config.json", gj, false))
    return err;
  if (!gj.is_null())
    if (auto err = merge_generation_config(gj, *cfg))
      return make_error(errc::invalid_config, dir + "/" + describe(err));
  return cfg;
}

caf::error check_tp(const hf_config& cfg, int tp) {
  auto refuse = [&](const std::string& what) {
    return make_error(errc::invalid_argument,
                      fmt::format("--tp {} cannot shard this {} model: {}; pick a TP size "
                                  "that divides it",
                                  tp, cfg.arch_name, what));
  };
  if (tp <= 0)
    return refuse("the TP size must be positive");
  if (cfg.num_heads % tp != 0)
    return refuse(
      fmt::format("num_attention_heads {} is not divisible by {}", cfg.num_heads, tp));
  if (cfg.num_kv_heads % tp != 0 && tp % cfg.num_kv_heads != 0)
    return refuse(fmt::format("num_key_value_heads {} neither divides nor is divisible by {}",
                              cfg.num_kv_heads, tp));
  if (cfg.intermediate_size % tp != 0)
    return refuse(
      fmt::format("intermediate_size {} is not divisible by {}", cfg.intermediate_size, tp));
  return caf::none;
}

caf::expected<pp_layers> pp_indices(int num_layers, int pp_rank, int pp_size,
                                    const std::vector<int>& partition) {
  if (pp_size <= 0 || pp_rank < 0 || pp_rank >= pp_size)
    return make_error(errc::invalid_argument,
                      fmt::format("pp rank {} of {} is not a pipeline stage", pp_rank,
                                  pp_size));
  std::vector<int> parts;
  if (!partition.empty()) {
    int sum = 0;
    for (int p : partition)
      sum += p;
    if (static_cast<int>(partition.size()) != pp_size || sum != num_layers)
      return make_error(errc::invalid_argument,
                        fmt::format("the layer partition ({} stage(s), {} layer(s)) must "
                                    "have one entry per pipeline stage ({}) summing to the "
                                    "model's {} layers (VLLM_PP_LAYER_PARTITION, "
                                    "--pp-layer-partition)",
                                    partition.size(), sum, pp_size, num_layers));
    parts = partition;
  } else {
    parts.assign(static_cast<size_t>(pp_size), num_layers / pp_size);
    const int rest = num_layers % pp_size;
    for (int i = 2; i < rest + 2; ++i)
      ++parts[static_cast<size_t>(pp_size - i)];
  }
  pp_layers out;
  for (int r = 0; r < pp_rank; ++r)
    out.first += parts[static_cast<size_t>(r)];
  out.count = parts[static_cast<size_t>(pp_rank)];
  return out;
}

caf::expected<std::vector<int>> parse_layer_partition(const std::string& text) {
  std::vector<int> out;
  auto refuse = [&] {
    return make_error(errc::invalid_argument, "layer partition '" + text
                                                + "' is not a comma-separated list of "
                                                  "layer counts such as 3,5");
  };
  if (text.empty())
    return out;
  size_t at = 0;
  while (at <= text.size()) {
    auto end = text.find(',', at);
    if (end == std::string::npos)
      end = text.size();
    auto item = text.substr(at, end - at);
    if (item.empty() || item.size() > 6
        || item.find_first_not_of("0123456789") != std::string::npos)
      return refuse();
    out.push_back(std::stoi(item));
    at = end + 1;
  }
  return out;
}

std::vector<float> rope_inv_freq(const rope_config& rope, int64_t head_dim) {
  const auto half = static_cast<size_t>(head_dim / 2);
  std::vector<float> inv(half);
  const auto base = static_cast<float>(rope.theta);
  const auto dim = static_cast<float>(head_dim);
  for (size_t i = 0; i < half; ++i)
    inv[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / dim);
  if (rope.type != rope_config::kind::llama3)
    return inv;
  const auto factor = static_cast<float>(rope.factor);
  const auto low = static_cast<float>(rope.low_freq_factor);
  const auto high = static_cast<float>(rope.high_freq_factor);
  const auto old_len = static_cast<float>(rope.original_max_position);
  const float low_wavelen = old_len / low;
  const float high_wavelen = old_len / high;
  const auto two_pi = static_cast<float>(2 * M_PI);
  for (auto& f : inv) {
    const float wavelen = two_pi / f;
    const float scaled = wavelen > low_wavelen ? f / factor : f;
    if (wavelen < high_wavelen || wavelen > low_wavelen) {
      f = scaled;
      continue;
    }
    const float smooth = (old_len / wavelen - low) / (high - low);
    f = (1 - smooth) * scaled / factor + smooth * scaled;
  }
  return inv;
}

} // namespace cafex::hf

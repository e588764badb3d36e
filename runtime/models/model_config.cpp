#include "runtime/models/model_config.hpp"

#include <nlohmann/json.hpp>

namespace cafex {

void to_json(nlohmann::json& j, const model_config& m) {
  j = {{"name", m.name},
       {"seed", m.seed},
       {"vocab_size", m.vocab_size},
       {"hidden_size", m.hidden_size},
       {"num_heads", m.num_heads},
       {"num_layers", m.num_layers},
       {"ffn_size", m.ffn_size},
       {"ffn_blocks", m.ffn_blocks},
       {"max_seq_len", m.max_seq_len},
       {"return_hidden", m.return_hidden},
       {"path", m.path},
       {"kv_cache_tokens", m.kv_cache_tokens},
       {"random_weights", m.random_weights},
       {"enforce_eager", m.enforce_eager},
       {"pp_layer_partition", m.pp_layer_partition}};
}

void from_json(const nlohmann::json& j, model_config& m) {
  m.name = j.value("name", m.name);
  m.seed = j.value("seed", m.seed);
  m.vocab_size = j.value("vocab_size", m.vocab_size);
  m.hidden_size = j.value("hidden_size", m.hidden_size);
  m.num_heads = j.value("num_heads", m.num_heads);
  m.num_layers = j.value("num_layers", m.num_layers);
  m.ffn_size = j.value("ffn_size", m.ffn_size);
  m.ffn_blocks = j.value("ffn_blocks", m.ffn_blocks);
  m.max_seq_len = j.value("max_seq_len", m.max_seq_len);
  m.return_hidden = j.value("return_hidden", m.return_hidden);
  m.path = j.value("path", m.path);
  m.kv_cache_tokens = j.value("kv_cache_tokens", m.kv_cache_tokens);
  m.random_weights = j.value("random_weights", m.random_weights);
  m.enforce_eager = j.value("enforce_eager", m.enforce_eager);
  m.pp_layer_partition = j.value("pp_layer_partition", m.pp_layer_partition);
}

} // namespace cafex

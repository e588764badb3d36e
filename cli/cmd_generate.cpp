// cafex generate: start the executor on a Hugging Face checkpoint (--model), generate
// from each --prompt-ids prompt with the sampling flags (runtime/models/generation.hpp
// runs the steps), print the tokens per prompt, shut down. With --json: one object on
// the last line of stdout,
//   {"outputs":[{"prompt_ids":[..],"token_ids":[..],"finish_reason":"length"|"stop",
//    "logprobs":[{"token_id":T,"logprob":L,"top":[[id,logprob],...]},...]},...],
//    "tp":N,"pp":M}
// ("logprobs" only with --logprobs). Exit 0; 1 when the executor or a request failed;
// 2 for bad flags, with one `error:` line.
#include <cstdio>
#include <random>

#include <nlohmann/json.hpp>

#include "cafex/executor.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/run_flags.hpp"
#include "cli/step_recovery.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"
#include "runtime/models/generation.hpp"
#include "runtime/models/hf/hf_config.hpp"

namespace cafex::cli {

namespace {

arg_parser generate_parser() {
  arg_parser p("cafex generate",
               "Generates tokens from each --prompt-ids prompt with a Hugging Face checkpoint "
               "(--model DIR) sharded over --tp x --pp worker processes, and prints them.");
  add_executor_flags(p);
  p.flag({{"--prompt-ids"}, "ID,ID,...", "a prompt as token ids (repeat for more)", ""})
    .flag({{"--max-tokens"}, "N", "tokens to generate per prompt at most", "16"})
    .flag({{"--temperature"}, "T", "0: greedy; else sample from softmax(logits / T)", "0"})
    .flag({{"--top-k"}, "K", "sample among the K best tokens (0: all)", "0"})
    .flag({{"--top-p"}, "P", "sample among the best tokens that reach probability P", "1"})
    .flag({{"--ignore-eos"}, "", "do not stop at the model's EOS token ids", ""})
    .flag({{"--stop-token-ids"}, "ID,ID,...", "also stop after any of these tokens", ""})
    .flag({{"--logprobs"}, "K", "report each token's logprob and the top K", "none"})
    .flag({{"--json"}, "", "print one JSON object on the last line instead of lines", ""});
  return p;
}

struct generate_job {
  executor_options opts;
  std::vector<std::vector<int32_t>> prompts;
  sampling_params params;
  std::vector<int32_t> eos;
  bool as_json = false;
};

std::vector<int32_t> token_list(const std::string& text, const std::string& flag,
                                int64_t vocab) {
  std::vector<int32_t> out;
  for (int v : parse_int_list(text, flag)) {
    if (v < 0 || v >= vocab)
      throw usage_error{flag + ": token id " + std::to_string(v)
                        + " is outside the model's vocabulary of " + std::to_string(vocab)};
    out.push_back(v);
  }
  return out;
}

generate_job parse_job(const parsed_args& args) {
  if (!args.has("--model"))
    throw usage_error{"--model DIR is required: a Hugging Face checkpoint directory"};
  generate_job job;
  job.opts = executor_options_from(args);
  auto hf = hf::load_hf_config(job.opts.model.path); // checked by executor_options_from
  if (!hf)
    throw usage_error{"--model: " + message_of(hf.error())};
  job.eos = hf->eos_token_ids;
  const auto prompts = args.get_all("--prompt-ids");
  if (prompts.empty())
    throw usage_error{"give at least one prompt: --prompt-ids 1,2,3 (repeat for more)"};
  for (const auto& p : prompts) {
    auto ids = token_list(p, "--prompt-ids", hf->vocab_size);
    if (ids.empty())
      throw usage_error{"--prompt-ids: a prompt needs at least one token id"};
    if (static_cast<int64_t>(ids.size()) >= hf->max_position)
      throw usage_error{"--prompt-ids: a prompt of " + std::to_string(ids.size())
                        + " tokens leaves no room in the model's "
                        + std::to_string(hf->max_position) + " positions"};
    job.prompts.push_back(std::move(ids));
  }
  auto& s = job.params;
  s.max_tokens = static_cast<int32_t>(args.get_int("--max-tokens", 16, 1, 1 << 30));
  s.temperature = static_cast<float>(args.get_double("--temperature", 0.0, 0.0, 1e6));
  s.top_k = static_cast<int32_t>(args.get_int("--top-k", 0, -1, 1 << 30));
  s.top_p = static_cast<float>(args.get_double("--top-p", 1.0, 0.0, 1.0));
  if (s.top_p <= 0.0f)
    throw usage_error{"--top-p must be in (0, 1], e.g. 0.9"};
  s.ignore_eos = args.has("--ignore-eos");
  if (args.has("--stop-token-ids"))
    s.stop_token_ids = token_list(args.get("--stop-token-ids"), "--stop-token-ids",
                                  hf->vocab_size);
  if (args.has("--logprobs"))
    s.logprobs = static_cast<int32_t>(args.get_int("--logprobs", 0, 0, max_logprobs));
  if (args.has("--seed")) {
    s.seed = static_cast<int64_t>(job.opts.model.seed);
  } else if (s.temperature > 0.0f) {
    // Unseeded sampling differs from run to run, as vLLM's does.
    std::random_device rd;
    s.seed = static_cast<int64_t>((uint64_t{rd()} << 31 ^ rd()) & ((uint64_t{1} << 62) - 1));
  }
  if (auto bad = check_sampling(s, hf->vocab_size); !bad.empty())
    throw usage_error{bad};
  job.as_json = args.has("--json");
  return job;
}

nlohmann::json to_json(const generation_output& o, bool with_logprobs) {
  nlohmann::json j = {{"prompt_ids", o.prompt_ids},
                      {"token_ids", o.token_ids},
                      {"finish_reason", o.finish_reason}};
  if (!o.error.empty())
    j["error"] = o.error;
  if (with_logprobs) {
    auto lps = nlohmann::json::array();
    for (const auto& lp : o.logprobs) {
      auto top = nlohmann::json::array();
      for (size_t i = 0; i < lp.top_ids.size(); ++i)
        top.push_back({lp.top_ids[i], lp.top_logprobs[i]});
      lps.push_back({{"token_id", lp.token}, {"logprob", lp.logprob}, {"top", top}});
    }
    j["logprobs"] = lps;
  }
  return j;
}

/// Runs every step of `gen`; recovers like `cafex run` under the restart policy. Returns
/// the failure that ended the run, if any.
caf::error run_steps(executor& ex, const executor_options& opts, generation& gen) {
  int recoveries = 0;
  while (!gen.done()) {
    auto step = gen.next_step();
    auto out = ex.execute_model(step);
    if (!out && opts.on_worker_failure == failure_policy::restart
        && recoveries < opts.max_restarts + 1 && recoverable(out.error())) {
      std::fprintf(stderr, "warning: step %llu failed (%s); waiting for recovery\n",
                   static_cast<unsigned long long>(step.step_id),
                   describe(out.error()).c_str());
      ++recoveries;
      if (wait_ready(ex, opts.start_timeout)) {
        gen.recompute();
        continue;
      }
    }
    if (!out)
      return out.error();
    gen.observe(*out);
  }
  return caf::none;
}

} // namespace

int generate_command(int argc, char** argv) {
  auto parser = generate_parser();
  generate_job job;
  try {
    auto args = parser.parse(argc, argv, 2);
    if (parser.help_requested(args)) {
      std::fputs(parser.help().c_str(), stdout);
      return 0;
    }
    if (!args.positional.empty())
      throw usage_error{"unexpected argument '" + args.positional.front() + "'"};
    job = parse_job(args);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what.c_str());
    return 2;
  }
  if (auto err = init_logging(job.opts.log_level, "driver")) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    return 2;
  }
  auto ex = executor::start(job.opts);
  if (!ex) {
    std::fprintf(stderr, "error: %s\n", describe(ex.error()).c_str());
    return code_of(ex.error()) == errc::invalid_argument ? 2 : 1;
  }
  generation gen(job.eos, job.opts.model.max_seq_len);
  for (const auto& p : job.prompts)
    gen.add(p, job.params);
  auto err = run_steps(**ex, job.opts, gen);
  (*ex)->shutdown();
  if (err) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    return 1;
  }
  int status = 0;
  const bool with_logprobs = job.params.logprobs >= 0;
  auto outputs = nlohmann::json::array();
  for (size_t i = 0; i < gen.outputs().size(); ++i) {
    const auto& o = gen.outputs()[i];
    if (!o.error.empty()) {
      std::fprintf(stderr, "error: prompt %zu: %s\n", i, o.error.c_str());
      status = 1;
    }
    outputs.push_back(to_json(o, with_logprobs));
    if (!job.as_json)
      std::printf("prompt %zu: %s (%s)\n", i, nlohmann::json(o.token_ids).dump().c_str(),
                  o.error.empty() ? o.finish_reason.c_str() : "failed");
  }
  if (job.as_json) {
    nlohmann::json j = {{"outputs", outputs},
                        {"tp", job.opts.parallel.tensor_parallel_size},
                        {"pp", job.opts.parallel.pipeline_parallel_size}};
    std::printf("%s\n", j.dump().c_str());
  }
  return status;
}

} // namespace cafex::cli

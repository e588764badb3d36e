// Which of the driver's environment variables travel to the workers.
//
// The rule (the seed's get_env_vars_to_copy, with prefixes instead of vLLM's list of
// known variables): a variable is copied when its name starts with one of `prefixes`
// (CAFEX_, NCCL_, VLLM_) or is listed in `additional` (HF_TOKEN, ...), AND it is
// neither `worker_specific` (host IP/port, LOCAL_RANK, CUDA_VISIBLE_DEVICES: each worker
// gets its own value, so the driver's would be wrong) nor in `non_carry_over` (the
// comma list in CAFEX_NON_CARRY_OVER_ENV_VARS, like Ray's RAY_NON_CARRY_OVER_ENV_VARS).
// So NCCL_NVLS_ENABLE, NCCL_DEBUG etc. are kept unless the user opts them out.
//
// read_process_environment() is the ONE place in cafex that reads the process
// environment; everything else takes an env_map, so it is testable without setenv.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace cafex {

using env_map = std::map<std::string, std::string>;

struct env_policy {
  std::vector<std::string> prefixes{"CAFEX_", "NCCL_", "VLLM_"};
  std::set<std::string> additional{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"};
  std::set<std::string> worker_specific{"CAFEX_HOST_IP", "CAFEX_HOST_PORT",
                                        "VLLM_HOST_IP",  "VLLM_HOST_PORT",
                                        "LOCAL_RANK",    "CUDA_VISIBLE_DEVICES"};
  std::set<std::string> non_carry_over;
};

/// Name of the variable holding the user's comma-separated opt-out list.
constexpr const char* non_carry_over_env_var = "CAFEX_NON_CARRY_OVER_ENV_VARS";

/// The default policy, with non_carry_over read from driver_env's
/// CAFEX_NON_CARRY_OVER_ENV_VARS (comma-separated; blanks around names are ignored).
env_policy default_env_policy(const env_map& driver_env);

/// The variables of driver_env to set on every worker, by the rule above.
env_map select_env_to_copy(const env_map& driver_env, const env_policy& policy);

/// A snapshot of this process's environment (`environ`).
env_map read_process_environment();

/// True for names whose values must not appear in logs or dry runs: the default
/// additional variables (HF_TOKEN, HUGGING_FACE_HUB_TOKEN) and any name containing
/// TOKEN, SECRET, PASSWORD or KEY (case-insensitive).
bool is_secret_env(const std::string& name);

/// A copy of env with the values of secret variables replaced by "<redacted>".
env_map redact_secrets(const env_map& env);

} // namespace cafex

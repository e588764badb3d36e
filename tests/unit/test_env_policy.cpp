// Which driver variables reach the workers, and which values are hidden in output.
#include <doctest/doctest.h>

#include <cstdlib>

#include "runtime/plan/env_policy.hpp"

using namespace cafex;

TEST_CASE("prefixed variables are copied, others are not") {
  env_map driver{{"CAFEX_LOG_LEVEL", "debug"}, {"NCCL_DEBUG", "INFO"}, {"VLLM_USE_V1", "1"},
                 {"PATH", "/usr/bin"},         {"HOME", "/root"},      {"XCAFEX_NOT", "1"}};
  auto out = select_env_to_copy(driver, default_env_policy(driver));
  CHECK(
    out
    == env_map{{"CAFEX_LOG_LEVEL", "debug"}, {"NCCL_DEBUG", "INFO"}, {"VLLM_USE_V1", "1"}});
}

TEST_CASE("additional variables are copied without a prefix") {
  env_map driver{{"HF_TOKEN", "hf_x"}, {"HUGGING_FACE_HUB_TOKEN", "hf_y"}, {"TOKEN", "z"}};
  auto out = select_env_to_copy(driver, default_env_policy(driver));
  CHECK(out == env_map{{"HF_TOKEN", "hf_x"}, {"HUGGING_FACE_HUB_TOKEN", "hf_y"}});
  env_policy custom;
  custom.additional.insert("OMP_NUM_THREADS");
  CHECK(select_env_to_copy({{"OMP_NUM_THREADS", "4"}}, custom).count("OMP_NUM_THREADS"));
}

TEST_CASE("worker-specific variables are never copied") {
  env_map driver{{"CUDA_VISIBLE_DEVICES", "0,1"}, {"LOCAL_RANK", "0"},
                 {"CAFEX_HOST_IP", "10.0.0.1"},   {"CAFEX_HOST_PORT", "5000"},
                 {"VLLM_HOST_IP", "10.0.0.1"},    {"VLLM_HOST_PORT", "5000"}};
  env_policy p = default_env_policy(driver);
  p.additional.insert("CUDA_VISIBLE_DEVICES"); // even when listed as additional
  p.additional.insert("LOCAL_RANK");
  CHECK(select_env_to_copy(driver, p).empty());
}

TEST_CASE("NCCL_NVLS_ENABLE is kept") {
  env_map driver{{"NCCL_NVLS_ENABLE", "0"}};
  CHECK(select_env_to_copy(driver, default_env_policy(driver))
        == env_map{{"NCCL_NVLS_ENABLE", "0"}});
}

TEST_CASE("CAFEX_NON_CARRY_OVER_ENV_VARS opts variables out") {
  env_map driver{{"CAFEX_NON_CARRY_OVER_ENV_VARS", " NCCL_DEBUG , HF_TOKEN,,"},
                 {"NCCL_DEBUG", "INFO"},
                 {"NCCL_NVLS_ENABLE", "0"},
                 {"HF_TOKEN", "hf_x"}};
  auto p = default_env_policy(driver);
  CHECK(p.non_carry_over == std::set<std::string>{"NCCL_DEBUG", "HF_TOKEN"});
  auto out = select_env_to_copy(driver, p);
  CHECK(out.count("NCCL_DEBUG") == 0);
  CHECK(out.count("HF_TOKEN") == 0);
  CHECK(out.count("NCCL_NVLS_ENABLE") == 1);
  CHECK(default_env_policy({}).non_carry_over.empty());
}

TEST_CASE("the default policy matches the documented lists") {
  env_policy p;
  CHECK(p.prefixes == std::vector<std::string>{"CAFEX_", "NCCL_", "VLLM_"});
  CHECK(p.additional.count("HF_TOKEN"));
  CHECK(p.worker_specific.size() == 6);
}

TEST_CASE("secret names are detected and their values redacted") {
  CHECK(is_secret_env("HF_TOKEN"));
  CHECK(is_secret_env("HUGGING_FACE_HUB_TOKEN"));
  CHECK(is_secret_env("CAFEX_CLUSTER_TOKEN"));
  CHECK(is_secret_env("AWS_SECRET_ACCESS_KEY"));
  CHECK(is_secret_env("DB_PASSWORD"));
  CHECK(is_secret_env("OPENAI_API_KEY"));
  CHECK(is_secret_env("my_api_key"));
  CHECK_FALSE(is_secret_env("NCCL_DEBUG"));
  CHECK_FALSE(is_secret_env("CUDA_VISIBLE_DEVICES"));
  auto r = redact_secrets({{"HF_TOKEN", "hf_x"}, {"NCCL_DEBUG", "INFO"}});
  CHECK(r == env_map{{"HF_TOKEN", "<redacted>"}, {"NCCL_DEBUG", "INFO"}});
}

TEST_CASE("read_process_environment sees this process's variables") {
  ::setenv("CAFEX_TEST_ENV_POLICY", "a=b", 1);
  auto env = read_process_environment();
  REQUIRE(env.count("CAFEX_TEST_ENV_POLICY"));
  CHECK(env["CAFEX_TEST_ENV_POLICY"] == "a=b"); // only the first '=' separates
  ::unsetenv("CAFEX_TEST_ENV_POLICY");
}

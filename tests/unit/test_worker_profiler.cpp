// --worker-profiler: parsing, argv wrapping as vLLM's ray_workers_use_nsight, finding nsys.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/worker_profiler.hpp"

using namespace cafex;

TEST_CASE("parse_worker_profiler accepts none, empty and nsys only") {
  CHECK(*parse_worker_profiler("") == worker_profiler::none);
  CHECK(*parse_worker_profiler("none") == worker_profiler::none);
  CHECK(*parse_worker_profiler("nsys") == worker_profiler::nsys);
  auto bad = parse_worker_profiler("ncu");
  REQUIRE(!bad);
  CHECK(code_of(bad.error()) == errc::invalid_argument);
  CHECK(describe(bad.error()).find("none or nsys") != std::string::npos);
  CHECK(std::string(to_string(worker_profiler::nsys)) == "nsys");
  CHECK(profiler_program(worker_profiler::nsys) == "nsys");
  CHECK(profiler_program(worker_profiler::none).empty());
}

TEST_CASE("none leaves the worker argv alone") {
  std::vector<std::string> argv{"/opt/cafex/bin/cafex", "worker", "--node", "n0"};
  auto out = wrap_worker_argv(worker_profiler::none, argv, "");
  REQUIRE(out);
  CHECK(*out == argv);
}

TEST_CASE("nsys wraps the worker exactly as ray_workers_use_nsight does") {
  std::vector<std::string> argv{"/opt/cafex/bin/cafex", "worker", "--rank", "3"};
  auto out = wrap_worker_argv(worker_profiler::nsys, argv, "/usr/local/bin/nsys");
  REQUIRE(out);
  std::vector<std::string> expected{"/usr/local/bin/nsys",
                                    "profile",
                                    "-t",
                                    "cuda,cudnn,cublas",
                                    "-o",
                                    "worker_process_%p",
                                    "--cuda-graph-trace=node",
                                    "/opt/cafex/bin/cafex",
                                    "worker",
                                    "--rank",
                                    "3"};
  CHECK(*out == expected);
}

TEST_CASE("nsys absent is a clear error, and an empty argv is refused") {
  auto out = wrap_worker_argv(worker_profiler::nsys, {"cafex", "worker"}, "");
  REQUIRE(!out);
  CHECK(code_of(out.error()) == errc::invalid_argument);
  auto text = describe(out.error());
  CHECK(text.find("nsys") != std::string::npos);
  CHECK(text.find("install Nsight Systems") != std::string::npos);
  CHECK(!wrap_worker_argv(worker_profiler::none, {}, ""));
}

TEST_CASE("find_executable walks PATH and needs the execute bit") {
  char tmpl[] = "/tmp/cafex-profiler-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const std::string exe = dir + "/nsys";
  const std::string plain = dir + "/plain";
  std::ofstream(exe) << "#!/bin/sh\n";
  std::ofstream(plain) << "data\n";
  REQUIRE(chmod(exe.c_str(), 0755) == 0);
  REQUIRE(chmod(plain.c_str(), 0644) == 0);
  CHECK(find_executable("nsys", "/nonexistent:" + dir) == exe);
  CHECK(find_executable("nsys", "/nonexistent").empty());
  CHECK(find_executable("plain", dir).empty()); // not executable
  CHECK(find_executable(exe, "") == exe);       // a path is checked as it is
  CHECK(find_executable("", dir).empty());
  std::remove(exe.c_str());
  std::remove(plain.c_str());
  rmdir(dir.c_str());
}

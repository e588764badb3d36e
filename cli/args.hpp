// A small command-line parser for the cafex subcommands: long flags with aliases,
// `--flag value` and `--flag=value`, generated --help, and errors that say what to do.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cafex::cli {

struct flag_spec {
  std::vector<std::string> names; ///< e.g. {"--tensor-parallel-size", "--tp"}
  std::string value_name;         ///< empty for boolean switches
  std::string help;
  std::string default_value; ///< shown in --help; empty for none
};

/// The parsed flags of one subcommand.
class parsed_args {
public:
  bool has(const std::string& name) const;
  /// The value of flag `name` (its first spelling), or `fallback`.
  std::string get(const std::string& name, const std::string& fallback = "") const;
  /// Integer value with range check; throws usage_error naming the flag.
  long get_int(const std::string& name, long fallback, long min, long max) const;
  double get_double(const std::string& name, double fallback, double min, double max) const;
  /// Every value of a flag given more than once (e.g. `--set A=1 --set B=2`), in order.
  std::vector<std::string> get_all(const std::string& name) const;
  std::vector<std::string> positional;

private:
  friend class arg_parser;
  std::map<std::string, std::string> values_;           // the last value of each flag
  std::map<std::string, std::vector<std::string>> all_; // every value, in order
};

/// Thrown for bad command lines; the message says what is wrong and what to do.
struct usage_error {
  std::string what;
};

class arg_parser {
public:
  arg_parser(std::string command, std::string summary);
  arg_parser& flag(flag_spec spec);
  /// Parses argv[first..argc). Throws usage_error; `--help` sets help_requested().
  parsed_args parse(int argc, char** argv, int first) const;
  bool help_requested(const parsed_args& args) const { return args.has("--help"); }
  std::string help() const;

private:
  const flag_spec* find(const std::string& name) const;
  std::string command_;
  std::string summary_;
  std::vector<flag_spec> flags_;
};

/// Parses "1,2,3" into integers; throws usage_error naming `flag` on bad input.
std::vector<int> parse_int_list(const std::string& text, const std::string& flag);

/// The one rule for the case of enumerated flag values (--strategy, --device, --channel,
/// --log-level, ...): any case is accepted, as --strategy PACK always was.
std::string lower_case(std::string text);

} // namespace cafex::cli

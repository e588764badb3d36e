#include "cli/args.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace cafex::cli {

std::string lower_case(std::string text) {
  for (auto& c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool parsed_args::has(const std::string& name) const {
  return values_.count(name) > 0;
}

std::string parsed_args::get(const std::string& name, const std::string& fallback) const {
  auto i = values_.find(name);
  return i == values_.end() ? fallback : i->second;
}

long parsed_args::get_int(const std::string& name, long fallback, long min, long max) const {
  auto i = values_.find(name);
  if (i == values_.end())
    return fallback;
  const auto& text = i->second;
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0)
    throw usage_error{name + " expects an integer, got '" + text + "'"};
  if (v < min || v > max)
    throw usage_error{name + " must be between " + std::to_string(min) + " and "
                      + std::to_string(max) + ", got " + text};
  return v;
}

double parsed_args::get_double(const std::string& name, double fallback, double min,
                               double max) const {
  auto i = values_.find(name);
  if (i == values_.end())
    return fallback;
  const auto& text = i->second;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0)
    throw usage_error{name + " expects a number, got '" + text + "'"};
  if (!(v >= min && v <= max)) {
    // The bounds as a person writes them: 0 and 1, not 0.000000 and 1.000000.
    auto plain = [](double x) {
      std::ostringstream out;
      out << x;
      return out.str();
    };
    throw usage_error{name + " must be between " + plain(min) + " and " + plain(max) + ", got "
                      + text};
  }
  return v;
}

arg_parser::arg_parser(std::string command, std::string summary)
  : command_(std::move(command)), summary_(std::move(summary)) {
  flag({{"--help", "-h"}, "", "show this help and exit", ""});
}

std::vector<std::string> parsed_args::get_all(const std::string& name) const {
  auto i = all_.find(name);
  return i == all_.end() ? std::vector<std::string>{} : i->second;
}

arg_parser& arg_parser::flag(flag_spec spec) {
  flags_.push_back(std::move(spec));
  return *this;
}

const flag_spec* arg_parser::find(const std::string& name) const {
  for (const auto& f : flags_)
    for (const auto& n : f.names)
      if (n == name)
        return &f;
  return nullptr;
}

parsed_args arg_parser::parse(int argc, char** argv, int first) const {
  parsed_args out;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      out.positional.push_back(arg);
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    const auto* spec = find(name);
    if (spec == nullptr)
      throw usage_error{"unknown flag '" + name + "' for '" + command_ + "'; see '" + command_
                        + " --help'"};
    const auto& key = spec->names.front();
    if (spec->value_name.empty()) {
      if (value)
        throw usage_error{name + " takes no value"};
      out.values_[key] = "1";
      continue;
    }
    if (!value) {
      if (i + 1 >= argc)
        throw usage_error{name + " needs a value (" + spec->value_name + ")"};
      value = argv[++i];
    }
    out.values_[key] = *value;
    out.all_[key].push_back(*value);
  }
  return out;
}

std::string arg_parser::help() const {
  std::ostringstream os;
  os << "usage: " << command_ << " [flags]\n\n" << summary_ << "\n\nflags:\n";
  for (const auto& f : flags_) {
    std::string names;
    for (const auto& n : f.names)
      names += (names.empty() ? "" : ", ") + n;
    if (!f.value_name.empty())
      names += " " + f.value_name;
    os << "  " << names;
    if (names.size() < 34)
      os << std::string(34 - names.size(), ' ');
    else
      os << "\n" << std::string(36, ' ');
    os << f.help;
    if (!f.default_value.empty())
      os << " (default: " << f.default_value << ")";
    os << "\n";
  }
  return os.str();
}

std::vector<int> parse_int_list(const std::string& text, const std::string& flag) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < 0 || v > 1000000)
      throw usage_error{flag + " expects comma-separated non-negative integers, got '" + text
                        + "'"};
    out.push_back(static_cast<int>(v));
  }
  if (out.empty())
    throw usage_error{flag + " expects at least one integer"};
  return out;
}

} // namespace cafex::cli

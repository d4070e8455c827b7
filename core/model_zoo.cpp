#include "core/model_zoo.hpp"

#include <regex>
#include <stdexcept>

namespace moesys::core {

const std::vector<ZooEntry>& zoo_entries() {
  static const std::vector<ZooEntry> entries = [] {
    std::vector<ZooEntry> out;
    for (const ZooFile& f : zoo_files()) {
      ZooEntry e;
      e.path = f.path;
      try {
        e.document = nlohmann::json::parse(f.text);
      } catch (const nlohmann::json::exception& ex) {
        throw std::logic_error(std::string(f.path) + ": " + ex.what());
      }
      if (!e.document.is_object() || !e.document.contains("model") || !e.document["model"].contains("name"))
        throw std::logic_error(std::string(f.path) + ": expected an object with a named \"model\"");
      e.name = e.document.value("family", e.document["model"]["name"].get<std::string>());
      out.push_back(std::move(e));
    }
    return out;
  }();
  return entries;
}

std::string zoo_model_names() {
  std::string names;
  for (const ZooEntry& e : zoo_entries()) names += (names.empty() ? "" : ", ") + e.name;
  return names;
}

std::optional<nlohmann::json> zoo_model_json(const std::string& name) {
  static const std::regex family(R"(gpt-moe-([1-9][0-9]{0,4})e)");
  std::smatch m;
  const bool paper = std::regex_match(name, m, family);
  for (const ZooEntry& e : zoo_entries()) {
    if (paper && e.name == "gpt-moe-<E>e") {
      nlohmann::json model = e.document["model"];
      const int experts = std::stoi(m[1].str());
      model["name"] = name;
      model["experts"] = experts;
      model["global_batch"] = model["micro_batch"].get<int>() * experts;
      return model;
    }
    if (!paper && e.name == name) return e.document["model"];
  }
  return std::nullopt;
}

}  // namespace moesys::core

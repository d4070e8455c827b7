// The report page of a finished study, results/<name>/index.html. Top to bottom it holds:
//   - the study's name and description, the command that makes the folder again, and the facts that do not change
//     from run to run (kind, number of runs and their outcomes, baseline, plots, the files in the folder);
//   - the ratios against the baseline (ratios.csv), each ratio coloured better or worse than the baseline;
//   - summary.md (inference studies): its paragraphs, lists and tables;
//   - every PNG plot, with a caption made from its file name;
//   - every run (runs.csv) and any other CSV table, numbers right-aligned and the baseline's rows shaded;
//   - the study's JSON config, pretty-printed, in a folded <details> block.
// The page is self-contained: the plots are embedded as base64 data: URIs, the CSS and the one small script are
// inline, and nothing refers to another file or to the network (its Content-Security-Policy forbids it), so it can
// be attached to a CI run, mailed or opened offline and still show everything. It holds no date, host or path of
// the machine that wrote it, so a rerun of the study gives the same page byte for byte.
// The script sets <body data-images-loaded> on load to "all", or to the number of images that did not decode;
// scripts/check-report.sh reads it back from a headless browser.
#include "studies/report_page.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/output_files.hpp"

namespace moesys::studies {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Text

std::string escape_html(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

/// Base64 (RFC 4648, with '=' padding), as a data: URI holds binary data.
std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto byte = [&](std::size_t i) { return static_cast<unsigned>(static_cast<unsigned char>(bytes[i])); };
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[n >> shift & 63];
  }
  const std::size_t rest = bytes.size() - i;  // 0, 1 or 2 bytes left: 2 or 1 padding characters
  if (rest > 0) {
    const unsigned n = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0u);
    out += kAlphabet[n >> 18 & 63];
    out += kAlphabet[n >> 12 & 63];
    out += rest == 2 ? kAlphabet[n >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  return std::string(s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1));
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// A number as the result files write them: 12, -0.5, 1.14481e+06, +27.5%, 97%.
bool is_number(std::string_view s) {
  if (!s.empty() && s.back() == '%') s.remove_suffix(1);
  auto digit = [&](std::size_t i) { return i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); };
  std::size_t i = 0, digits = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  for (; digit(i); ++i) ++digits;
  if (i < s.size() && s[i] == '.')
    for (++i; digit(i); ++i) ++digits;
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == s.size();
}

/// "step_breakdown.png" -> "Step breakdown".
std::string caption_of(const std::string& file_name) {
  std::string caption = fs::path(file_name).stem().string();
  std::replace(caption.begin(), caption.end(), '_', ' ');
  if (!caption.empty()) caption[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(caption[0])));
  return caption;
}

std::string string_at(const json& study, const char* key) {
  return study.is_object() && study.contains(key) && study[key].is_string() ? study[key].get<std::string>() : "";
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The study folder

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) throw core::RuntimeFailure("cannot read " + path.string() + " for the report page");
  return text.str();
}

/// The plain files of the study folder, sorted by name: neither hidden files (staging, temporaries) nor this page.
std::vector<std::string> files_in(const fs::path& dir) {
  const std::string what = "cannot read study folder " + dir.string() + " for the report page";
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw core::RuntimeFailure(what + ": it does not exist");
  if (!fs::is_directory(dir, ec)) throw core::RuntimeFailure(what + ": not a folder");
  std::vector<std::string> names;
  fs::directory_iterator it(dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (name.starts_with(".") || name.starts_with("index.html") || !it->is_regular_file(type_ec)) continue;
    names.push_back(name);
  }
  if (ec) throw core::RuntimeFailure(what + ": " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

/// The baseline's variant names: "baseline" (training: a name or a list), or "compare"."baseline" (inference).
std::vector<std::string> baselines_of(const json& study) {
  std::vector<std::string> names;
  if (!study.is_object()) return names;
  const json* b = study.contains("baseline") ? &study["baseline"] : nullptr;
  if (!b && study.contains("compare") && study["compare"].is_object() && study["compare"].contains("baseline"))
    b = &study["compare"]["baseline"];
  if (b && b->is_string()) names.push_back(b->get<std::string>());
  if (b && b->is_array())
    for (const json& x : *b)
      if (x.is_string()) names.push_back(x.get<std::string>());
  return names;
}

// ---------------------------------------------------------------------------------------------------------------
// Tables (CSV files and summary.md's pipe tables)

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<bool> right;  // per column, from a markdown `---:`; numbers are right-aligned anyway
};

/// RFC 4180 CSV: quoted fields may hold commas, doubled quotes and line breaks; blank lines are skipped.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, started = false;  // inside quotes; the record has any content
  auto end_record = [&] {
    if (started) {
      record.push_back(field);
      records.push_back(record);
    }
    record.clear(), field.clear(), started = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (quoted) {
      if (ch != '"')
        field += ch;
      else if (i + 1 < text.size() && text[i + 1] == '"')
        field += '"', ++i;
      else
        quoted = false;
    } else if (ch == '"') {
      quoted = started = true;
    } else if (ch == ',') {
      record.push_back(field), field.clear(), started = true;
    } else if (ch == '\n' || ch == '\r') {
      if (ch == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_record();
    } else {
      field += ch, started = true;
    }
  }
  end_record();
  return records;
}

Table csv_table(const std::string& text) {
  Table t;
  auto records = parse_csv(text);
  if (records.empty()) return t;
  t.header = std::move(records.front());
  t.rows.assign(std::make_move_iterator(records.begin() + 1), std::make_move_iterator(records.end()));
  return t;
}

/// "| a | b |" -> {"a", "b"}.
std::vector<std::string> pipe_cells(const std::string& line) {
  std::string inner = trim(line);
  if (inner.starts_with("|")) inner.erase(0, 1);
  if (inner.ends_with("|")) inner.pop_back();
  std::vector<std::string> cells;
  std::istringstream in(inner);
  for (std::string cell; std::getline(in, cell, '|');) cells.push_back(trim(cell));
  return cells;
}

bool is_alignment_row(const std::vector<std::string>& cells) {
  return !cells.empty() && std::all_of(cells.begin(), cells.end(), [](const std::string& c) {
    return !c.empty() && c.find_first_not_of(":-") == std::string::npos && c.find('-') != std::string::npos;
  });
}

Table markdown_table(const std::vector<std::string>& lines) {
  Table t;
  if (lines.empty()) return t;
  t.header = pipe_cells(lines.front());
  std::size_t first_row = 1;
  if (lines.size() > 1 && is_alignment_row(pipe_cells(lines[1]))) {
    for (const std::string& c : pipe_cells(lines[1])) t.right.push_back(c.ends_with(":") && !c.starts_with(":"));
    first_row = 2;
  }
  for (std::size_t i = first_row; i < lines.size(); ++i) t.rows.push_back(pipe_cells(lines[i]));
  return t;
}

/// The column naming a row's variant, matched against the baseline: "variant" (training), else "preset"
/// (inference runs.csv), else "run" (summary.md); none (-1) otherwise.
int key_column(const std::vector<std::string>& header) {
  for (const char* name : {"variant", "preset", "run"}) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it != header.end()) return static_cast<int>(it - header.begin());
  }
  return -1;
}

enum class Better { none, higher, lower };

/// Whether a column compares with the baseline, and which way is better: "*_ratio" (ratios.csv: 1 = as the
/// baseline) and "vs <baseline>" (summary.md: +0.0% = as the baseline); memory and time are better when lower.
Better ratio_direction(const std::string& column) {
  if (!column.ends_with("_ratio") && !column.starts_with("vs ")) return Better::none;
  for (const char* lower_is_better : {"memory", "hbm", "time", "step", "latency", "ttft", "tpot"})
    if (column.find(lower_is_better) != std::string::npos) return Better::lower;
  return Better::higher;
}

/// " better", " worse" or " even" against the baseline; "" when the cell holds no number.
std::string ratio_class(const std::string& column, const std::string& cell, Better better) {
  if (!is_number(cell)) return "";
  const double value = std::strtod(cell.c_str(), nullptr);
  const double even = column.ends_with("_ratio") ? 1.0 : 0.0;
  if (std::abs(value - even) < 1e-12) return " even";
  return (value > even) == (better == Better::higher) ? " better" : " worse";
}

/// A header cell: long snake_case names may break after their underscores.
std::string header_cell(const std::string& name) {
  std::string out;
  for (char ch : escape_html(name)) out += ch == '_' ? std::string("_<wbr>") : std::string(1, ch);
  return out;
}

bool numeric_column(const Table& t, std::size_t c) {
  if (c < t.right.size() && t.right[c]) return true;
  bool any = false;
  for (const auto& row : t.rows) {
    if (c >= row.size() || row[c].empty()) continue;
    if (!is_number(row[c])) return false;
    any = true;
  }
  return any;
}

/// Cells longer than this may wrap (labels, error messages); shorter ones stay on one line.
constexpr std::size_t kLongCell = 32;

std::string render_table(const Table& t, const std::set<std::string>& baselines) {
  const std::size_t columns = t.header.size();
  const int key = key_column(t.header);
  std::vector<Better> better;
  std::vector<bool> numeric;
  for (std::size_t c = 0; c < columns; ++c) {
    better.push_back(ratio_direction(t.header[c]));
    numeric.push_back(numeric_column(t, c));
  }
  std::string html = "<div class=\"table-wrap\"><table>\n<thead><tr>";
  for (std::size_t c = 0; c < columns; ++c)
    html += std::string(numeric[c] ? "<th class=\"num\">" : "<th>") + header_cell(t.header[c]) + "</th>";
  html += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    const bool baseline = key >= 0 && static_cast<std::size_t>(key) < row.size() && baselines.count(row[key]);
    html += baseline ? "<tr class=\"baseline\">" : "<tr>";
    for (std::size_t c = 0; c < std::max(columns, row.size()); ++c) {
      const std::string cell = c < row.size() ? row[c] : "";
      std::string classes;
      if ((c < columns && numeric[c]) || is_number(cell))
        classes = "num";
      else if (cell.size() > kLongCell)
        classes = "long";
      if (c < columns && better[c] != Better::none) {
        const std::string ratio = ratio_class(t.header[c], cell, better[c]);
        if (!ratio.empty()) classes += " ratio" + ratio;
      }
      classes = trim(classes);
      html += (classes.empty() ? "<td>" : "<td class=\"" + classes + "\">") + escape_html(cell) + "</td>";
    }
    html += "</tr>\n";
  }
  return html + "</tbody></table></div>\n";
}

// ---------------------------------------------------------------------------------------------------------------
// summary.md

/// The markdown that the inference study writes: headings, paragraphs, "- " lists and pipe tables. Its leading
/// "# <name>" and the description paragraph repeat the page's header and are left out.
std::string render_markdown(const std::string& md, const std::set<std::string>& baselines, const std::string& name,
                            const std::string& description) {
  const std::vector<std::string> lines = split_lines(md);
  std::string html, paragraph;
  std::vector<std::string> items;
  auto flush = [&] {
    if (!paragraph.empty() && paragraph != description) html += "<p>" + escape_html(paragraph) + "</p>\n";
    paragraph.clear();
    if (!items.empty()) {
      html += "<ul>\n";
      for (const std::string& item : items) html += "<li>" + escape_html(item) + "</li>\n";
      html += "</ul>\n";
    }
    items.clear();
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string line = trim(lines[i]);
    if (line.empty()) {
      flush();
    } else if (line.starts_with("|")) {
      flush();
      std::vector<std::string> block;
      for (; i < lines.size() && trim(lines[i]).starts_with("|"); ++i) block.push_back(lines[i]);
      --i;
      html += render_table(markdown_table(block), baselines);
    } else if (line.starts_with("#")) {
      flush();
      const std::size_t hashes = std::min(line.find_first_not_of('#'), line.size());
      const std::string text = trim(line.substr(hashes));
      const std::string level = std::to_string(std::min<std::size_t>(hashes + 2, 6));  // below the page's h2
      if (!(html.empty() && text == name)) html += "<h" + level + ">" + escape_html(text) + "</h" + level + ">\n";
    } else if (line.starts_with("- ") || line.starts_with("* ")) {
      if (!paragraph.empty()) flush();
      items.push_back(trim(line.substr(2)));
    } else {
      if (!items.empty()) flush();
      paragraph += (paragraph.empty() ? "" : " ") + line;
    }
  }
  flush();
  return html;
}

// ---------------------------------------------------------------------------------------------------------------
// The page

constexpr const char* kStyle = R"(
body { margin: 0; background: #f3f4f6; color: #1f2328;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { box-sizing: border-box; max-width: 1200px; min-height: 100vh; margin: 0 auto; padding: 28px 36px 56px;
       background: #fff; }
h1 { margin: 0 0 6px; font-size: 28px; }
h2 { margin: 40px 0 12px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; font-size: 20px; }
h3 { margin: 22px 0 8px; font-size: 16px; }
a { color: #0969da; text-decoration: none; }
nav a { margin-right: 16px; font-size: 14px; }
.description { max-width: 80ch; margin: 8px 0 16px; color: #424a53; font-size: 16px; }
.label { margin: 16px 0 4px; color: #57606a; font-size: 13px; font-weight: 600; text-transform: uppercase; }
.note { color: #57606a; font-size: 13px; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
pre { overflow-x: auto; margin: 0; padding: 12px 14px; border: 1px solid #d0d7de; border-radius: 6px;
      background: #f6f8fa; font-size: 13px; line-height: 1.45; }
pre.command { border-color: #1f2328; background: #1f2328; color: #f6f8fa; white-space: pre-wrap;
              word-break: break-all; }
code { padding: 1px 5px; border-radius: 4px; background: #eff1f3; font-size: 13px; }
pre code { padding: 0; background: none; font-size: inherit; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 18px 0 0; font-size: 14px; }
dl.facts dt { color: #57606a; font-weight: 600; }
dl.facts dd { margin: 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 18px; border: 1px solid #d0d7de; border-radius: 6px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th, td { padding: 5px 8px; border-bottom: 1px solid #eaeef2; background: #fff; text-align: left;
         vertical-align: top; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; vertical-align: bottom; white-space: normal; text-wrap: balance; }
td.long { min-width: 14em; white-space: normal; }
tbody tr:last-child td { border-bottom: none; }
tbody tr:nth-child(even) td { background: #fafbfc; }
th:first-child, td:first-child { position: sticky; left: 0; box-shadow: 1px 0 0 #eaeef2; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr.baseline td { background: #fff8c5; }
td.ratio { font-weight: 600; }
tbody tr td.ratio.better { background: #dafbe1; color: #116329; }
tbody tr td.ratio.worse { background: #ffebe9; color: #a40e26; }
.swatch { display: inline-block; width: 11px; height: 11px; margin: 0 4px 0 10px; border: 1px solid #d0d7de;
          vertical-align: -1px; }
.swatch.baseline { background: #fff8c5; }
.swatch.better { background: #dafbe1; }
.swatch.worse { background: #ffebe9; }
figure { margin: 18px 0 34px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; border: 1px solid #eaeef2;
             border-radius: 6px; }
figcaption { margin-top: 6px; color: #424a53; font-size: 14px; text-align: center; }
details { margin-top: 8px; }
details summary { margin-bottom: 8px; cursor: pointer; font-weight: 600; }
)";

// Marks the page once every image has been looked at: "all" when each decoded, else how many did not.
constexpr const char* kImageCheck = R"(
window.addEventListener("load", function () {
  var failed = 0;
  for (var i = 0; i < document.images.length; i++) {
    var image = document.images[i];
    if (!image.complete || image.naturalWidth === 0) failed++;
  }
  document.body.dataset.imagesLoaded = failed === 0 ? "all" : String(failed);
});
)";

struct Section {
  std::string id, title, body;
};

/// "12 runs: 10 ok, 2 infeasible" from runs.csv (its status column, when it has one).
std::string runs_fact(const Table& runs) {
  std::string fact = std::to_string(runs.rows.size());
  const auto status = std::find(runs.header.begin(), runs.header.end(), "status");
  if (status == runs.header.end()) return fact;
  const auto column = static_cast<std::size_t>(status - runs.header.begin());
  std::vector<std::pair<std::string, int>> counts;  // in order of first appearance
  for (const auto& row : runs.rows) {
    const std::string s = column < row.size() ? row[column] : "";
    auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == s; });
    if (it == counts.end())
      counts.emplace_back(s, 1);
    else
      ++it->second;
  }
  std::vector<std::string> parts;
  for (const auto& [s, n] : counts) parts.push_back(std::to_string(n) + " " + s);
  return fact + " (" + join(parts, ", ") + ")";
}

std::string facts_html(const json& study, const Table* runs, const std::vector<std::string>& baselines,
                       std::size_t plots, const std::vector<std::string>& files) {
  std::vector<std::pair<std::string, std::string>> facts;  // name, HTML
  if (const std::string kind = string_at(study, "kind"); !kind.empty()) facts.emplace_back("Kind", escape_html(kind));
  if (runs) facts.emplace_back("Runs", escape_html(runs_fact(*runs)));
  if (!baselines.empty()) facts.emplace_back("Baseline", escape_html(join(baselines, ", ")));
  facts.emplace_back("Plots", std::to_string(plots));
  std::vector<std::string> names;
  for (const std::string& f : files) names.push_back("<code>" + escape_html(f) + "</code>");
  facts.emplace_back("Files", names.empty() ? "none" : join(names, " "));
  std::string html = "<dl class=\"facts\">\n";
  for (const auto& [name, value] : facts) html += "<dt>" + name + "</dt><dd>" + value + "</dd>\n";
  return html + "</dl>\n";
}

std::string baseline_legend(const std::vector<std::string>& baselines) {
  if (baselines.empty()) return "";
  return "<p class=\"note\"><span class=\"swatch baseline\"></span>rows of the baseline (" +
         escape_html(join(baselines, ", ")) + ")</p>\n";
}

std::string ratio_legend() {
  return "<p class=\"note\">Each variant against the baseline of its case:<span class=\"swatch better\"></span>better "
         "than the baseline<span class=\"swatch worse\"></span>worse (throughput: higher is better; memory and "
         "time: lower is better).</p>\n";
}

std::string figure_html(const std::string& file_name, const std::string& png) {
  const std::string caption = escape_html(caption_of(file_name));
  return "<figure><img src=\"data:image/png;base64," + base64(png) + "\" alt=\"" + caption + "\">\n<figcaption>" +
         caption + " <span class=\"note\">(" + escape_html(file_name) + ")</span></figcaption></figure>\n";
}

/// The sections under the page's header, in reading order; absent files give no section.
std::vector<Section> sections(const fs::path& dir, const std::vector<std::string>& files, const json& study,
                              const std::vector<std::string>& baselines, const Table* runs) {
  const std::set<std::string> marked(baselines.begin(), baselines.end());
  auto has = [&](const std::string& f) { return std::find(files.begin(), files.end(), f) != files.end(); };
  std::vector<Section> out;
  if (has("ratios.csv"))
    out.push_back({"ratios", "Against the baseline",
                   ratio_legend() + render_table(csv_table(read_file(dir / "ratios.csv")), marked)});
  if (has("summary.md"))
    out.push_back({"summary", "Summary",
                   render_markdown(read_file(dir / "summary.md"), marked, string_at(study, "name"),
                                   string_at(study, "description"))});
  std::string figures;
  for (const std::string& f : files)
    if (f.ends_with(".png")) figures += figure_html(f, read_file(dir / f));
  if (!figures.empty()) out.push_back({"plots", "Plots", figures});
  if (runs) out.push_back({"runs", "Runs", baseline_legend(baselines) + render_table(*runs, marked)});
  std::string others;
  for (const std::string& f : files)
    if (f.ends_with(".csv") && f != "runs.csv" && f != "ratios.csv")
      others += "<h3>" + escape_html(f) + "</h3>\n" + render_table(csv_table(read_file(dir / f)), marked);
  if (!others.empty()) out.push_back({"tables", "Other tables", others});
  const std::string config = study.dump(2, ' ', false, json::error_handler_t::replace);
  out.push_back({"config", "Study configuration",
                 "<details><summary>The study's JSON</summary>\n<pre>" + escape_html(config) + "</pre></details>\n"});
  return out;
}

std::string page_html(const fs::path& dir, const json& study, const std::string& reproduce_command) {
  const std::vector<std::string> files = files_in(dir);
  const std::vector<std::string> baselines = baselines_of(study);
  std::string name = string_at(study, "name");
  if (name.empty()) name = dir.filename().string();
  const std::string description = string_at(study, "description");
  std::optional<Table> runs;
  if (std::find(files.begin(), files.end(), "runs.csv") != files.end()) runs = csv_table(read_file(dir / "runs.csv"));
  const auto plots = static_cast<std::size_t>(
      std::count_if(files.begin(), files.end(), [](const std::string& f) { return f.ends_with(".png"); }));
  const std::vector<Section> body = sections(dir, files, study, baselines, runs ? &*runs : nullptr);

  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html +=
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
      "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n";
  html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  html += "<title>" + escape_html(name) + " - moesys study</title>\n<style>" + kStyle + "</style>\n";
  html += "<script>" + std::string(kImageCheck) + "</script>\n</head>\n<body>\n<main>\n";
  html += "<h1>" + escape_html(name) + "</h1>\n";
  if (!description.empty()) html += "<p class=\"description\">" + escape_html(description) + "</p>\n";
  html += "<nav>";
  for (const Section& s : body) html += "<a href=\"#" + s.id + "\">" + escape_html(s.title) + "</a>";
  html += "</nav>\n";
  html += "<p class=\"label\">Reproduce</p>\n<pre class=\"command\"><code>" + escape_html(reproduce_command) +
          "</code></pre>\n";
  html += facts_html(study, runs ? &*runs : nullptr, baselines, plots, files);
  for (const Section& s : body)
    html += "<section id=\"" + s.id + "\">\n<h2>" + escape_html(s.title) + "</h2>\n" + s.body + "</section>\n";
  return html + "</main>\n</body>\n</html>\n";
}

}  // namespace

void write_report_page(const fs::path& study_dir, const json& study, const std::string& reproduce_command) {
  const std::string html = page_html(study_dir, study, reproduce_command);
  core::write_file_atomically((study_dir / "index.html").string(), html);
}

}  // namespace moesys::studies

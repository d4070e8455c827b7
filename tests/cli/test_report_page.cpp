// The study report page (studies/report_page.hpp): one self-contained index.html per results folder, with the
// study's text escaped, a table row per CSV row, every PNG embedded byte for byte, nothing fetched from elsewhere,
// the same bytes on every rerun, and a RuntimeFailure (and no file left) when the folder cannot be read or written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "studies/report_page.hpp"

namespace moesys::studies {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kCommand = "build/moesys experiment experiments/fake-study.json";
const std::string kDescription = "A fake study <script>alert(\"x\")</script> & friends";

// Three 1x1 / 2x1 / 3x1 PNGs whose sizes (69, 70, 68 bytes) leave 0, 1 and 2 bytes over a multiple of three, so
// that every base64 padding case is checked; the expected base64 comes from an independent encoder.
const std::vector<unsigned char> kRedPng = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00,
    0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0x00, 0x00, 0x03, 0x01, 0x01, 0x00, 0xf7,
    0x03, 0x41, 0x43, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
const std::string kRedBase64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC";
const std::vector<unsigned char> kBluePng = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x7b, 0x40, 0xe8, 0xdd, 0x00, 0x00, 0x00,
    0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x60, 0x60, 0xf8, 0x0f, 0x44, 0x00, 0x05, 0x02, 0x01, 0xff,
    0x1e, 0x75, 0x84, 0x8f, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
const std::string kBlueBase64 = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAADUlEQVR42mNgYPgPRAAFAgH/HnWEjwAAAABJRU5ErkJggg==";
const std::vector<unsigned char> kWhitePng = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x94, 0x82, 0x83, 0xe3, 0x00, 0x00, 0x00,
    0x0b, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0x0f, 0x03, 0x00, 0x2c, 0xdd, 0x08, 0xf8, 0x4d, 0x4d,
    0x64, 0x6e, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
const std::string kWhiteBase64 = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAABCAIAAACUgoPjAAAAC0lEQVR42mP4DwMALN0I+E1NZG4AAAAASUVORK5CYII=";

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

void write_bytes(const fs::path& path, const std::vector<unsigned char>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

/// The HTML of <section id="`id`">, or "" when the page has no such section.
std::string section(const std::string& html, const std::string& id) {
  const auto begin = html.find("<section id=\"" + id + "\">");
  if (begin == std::string::npos) return "";
  return html.substr(begin, html.find("</section>", begin) - begin);
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class ReportPage : public ::testing::Test {
protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("moesys-test-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    dir_ = root_ / "fake-study";
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ignored);
    fs::remove_all(root_, ignored);
  }

  /// A small training study's folder: three runs (one a baseline, one label with a comma), two ratios, three plots.
  void write_fake_study() {
    write_text(dir_ / "runs.csv",
               "label,case,variant,status,tokens_per_s,peak_hbm_gib,error\n"
               "small / deepspeed,small,deepspeed,ok,1000,50.5,\n"
               "small / moesys,small,moesys,ok,1200,55.55,\n"
               "\"large, 8 GPUs / moesys\",\"large, 8 GPUs\",moesys,failed,,,\"a <b> & c\"\n");
    write_text(dir_ / "ratios.csv",
               "case,variant,baseline,tokens_per_s,baseline_tokens_per_s,throughput_ratio,peak_hbm_gib,"
               "baseline_peak_hbm_gib,memory_ratio\n"
               "small,moesys,deepspeed,1200,1000,1.2,55.55,50.5,1.1\n"
               "tiny,moesys,deepspeed,900,1000,0.9,40,50,0.8\n");
    write_text(dir_ / "runs.json", "{}\n");
    write_bytes(dir_ / "throughput_vs_gpus.png", kRedPng);
    write_bytes(dir_ / "memory.png", kBluePng);
    write_bytes(dir_ / "step_breakdown.png", kWhitePng);
  }

  json study() const {
    return {{"kind", "training"}, {"name", "fake-study"}, {"description", kDescription}, {"baseline", "deepspeed"},
            {"base", {{"cluster", {{"gpus", 8}}}}}};
  }

  fs::path root_, dir_;
};

TEST_F(ReportPage, WritesOneSelfContainedPage) {
  write_fake_study();
  write_report_page(dir_, study(), kCommand);
  ASSERT_TRUE(fs::is_regular_file(dir_ / "index.html"));
  const std::string html = read_text(dir_ / "index.html");

  // The description, escaped wherever it appears (header and config); no raw markup of it anywhere.
  EXPECT_NE(html.find("A fake study &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; friends"),
            std::string::npos);
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
  EXPECT_EQ(html.find("</script> &"), std::string::npos);
  EXPECT_NE(html.find("<h1>fake-study</h1>"), std::string::npos);
  EXPECT_NE(html.find(kCommand), std::string::npos);

  // A row per CSV row (and the header row), numbers right-aligned, CSV quoting undone, cell text escaped.
  const std::string runs = section(html, "runs"), ratios = section(html, "ratios");
  EXPECT_EQ(count(runs, "<tr"), 4u);
  EXPECT_EQ(count(ratios, "<tr"), 3u);
  EXPECT_NE(runs.find("<td>large, 8 GPUs / moesys</td>"), std::string::npos);
  EXPECT_NE(runs.find("<td class=\"num\">1200</td>"), std::string::npos);
  EXPECT_NE(runs.find("a &lt;b&gt; &amp; c"), std::string::npos);
  // The baseline's row is marked; the ratios are coloured against it (throughput up and memory down are better).
  EXPECT_EQ(count(runs, "<tr class=\"baseline\">"), 1u);
  EXPECT_NE(ratios.find("<td class=\"num ratio better\">1.2</td>"), std::string::npos);
  EXPECT_NE(ratios.find("<td class=\"num ratio worse\">1.1</td>"), std::string::npos);
  EXPECT_NE(ratios.find("<td class=\"num ratio worse\">0.9</td>"), std::string::npos);
  EXPECT_NE(ratios.find("<td class=\"num ratio better\">0.8</td>"), std::string::npos);

  // Every PNG once, byte for byte, with a caption from its name; nothing loaded from anywhere else.
  EXPECT_EQ(count(html, "data:image/png;base64,"), 3u);
  EXPECT_EQ(count(html, "<img "), 3u);
  EXPECT_NE(html.find("src=\"data:image/png;base64," + kRedBase64 + "\""), std::string::npos);
  EXPECT_NE(html.find("src=\"data:image/png;base64," + kBlueBase64 + "\""), std::string::npos);
  EXPECT_NE(html.find("src=\"data:image/png;base64," + kWhiteBase64 + "\""), std::string::npos);
  EXPECT_NE(html.find("<figcaption>Throughput vs gpus"), std::string::npos);
  EXPECT_NE(html.find("<figcaption>Step breakdown"), std::string::npos);
  EXPECT_EQ(count(html, "src=\""), count(html, "src=\"data:"));
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);

  // The config, folded; the image check script; the temporary file is gone.
  EXPECT_NE(section(html, "config").find("<details>"), std::string::npos);
  EXPECT_NE(section(html, "config").find("&quot;gpus&quot;: 8"), std::string::npos);
  EXPECT_NE(html.find("document.body.dataset.imagesLoaded"), std::string::npos);
  EXPECT_EQ(names_in(dir_), (std::vector<std::string>{"index.html", "memory.png", "ratios.csv", "runs.csv",
                                                      "runs.json", "step_breakdown.png", "throughput_vs_gpus.png"}));
}

TEST_F(ReportPage, RerunIsByteIdentical) {
  write_fake_study();
  write_report_page(dir_, study(), kCommand);
  const std::string first = read_text(dir_ / "index.html");
  write_report_page(dir_, study(), kCommand);  // the page itself is not part of the next page
  EXPECT_EQ(read_text(dir_ / "index.html"), first);
  // Nor is where the folder lies.
  fs::rename(dir_, root_ / "moved");
  write_report_page(root_ / "moved", study(), kCommand);
  EXPECT_EQ(read_text(root_ / "moved" / "index.html"), first);
  fs::rename(root_ / "moved", dir_);
}

TEST_F(ReportPage, InferenceSummaryBecomesTables) {
  write_text(dir_ / "runs.csv", "preset,policy,tokens_per_s\ndeepspeed,deepspeed,10\nmoesys,moesys,12\n");
  write_text(dir_ / "summary.md",
             "# fake-study\n\n" + kDescription + "\n\n"
             "| scenario | run | tokens/s | vs deepspeed |\n|---|---|---:|---:|\n"
             "| one GPU | deepspeed | 10.00 | +0.0% |\n| one GPU | moesys | 12.00 | +20.0% |\n\n"
             "Skipped (do not fit in GPU memory):\n\n- run 3 <too big>\n");
  json s = study();
  s.erase("baseline");
  s["kind"] = "inference";
  s["compare"] = {{"baseline", "deepspeed"}};
  write_report_page(dir_, s, kCommand);
  const std::string summary = section(read_text(dir_ / "index.html"), "summary");
  EXPECT_EQ(count(summary, "<tr"), 3u);
  EXPECT_EQ(count(summary, "<tr class=\"baseline\">"), 1u);
  EXPECT_NE(summary.find("<td class=\"num ratio better\">+20.0%</td>"), std::string::npos);
  EXPECT_NE(summary.find("<td class=\"num ratio even\">+0.0%</td>"), std::string::npos);
  EXPECT_NE(summary.find("<li>run 3 &lt;too big&gt;</li>"), std::string::npos);
  EXPECT_EQ(summary.find("friends"), std::string::npos);  // the description is in the page's header already
  EXPECT_EQ(summary.find("fake-study"), std::string::npos);
}

TEST_F(ReportPage, MissingFolderThrowsAndWritesNothing) {
  const fs::path missing = root_ / "no-such-study";
  try {
    write_report_page(missing, study(), kCommand);
    FAIL() << "expected RuntimeFailure";
  } catch (const core::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-study"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(missing));
  EXPECT_EQ(names_in(root_), std::vector<std::string>{"fake-study"});
}

TEST_F(ReportPage, FileInsteadOfFolderThrows) {
  write_text(root_ / "not-a-folder", "x");
  EXPECT_THROW(write_report_page(root_ / "not-a-folder", study(), kCommand), core::RuntimeFailure);
  EXPECT_EQ(names_in(root_), (std::vector<std::string>{"fake-study", "not-a-folder"}));
}

TEST_F(ReportPage, PageThatCannotBeWrittenLeavesNoTemporaryFile) {
  write_fake_study();
  fs::create_directories(dir_ / "index.html" / "in-the-way");  // a folder where the page must go
  EXPECT_THROW(write_report_page(dir_, study(), kCommand), core::RuntimeFailure);
  for (const std::string& name : names_in(dir_)) EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
  EXPECT_TRUE(fs::is_directory(dir_ / "index.html" / "in-the-way"));
}

TEST_F(ReportPage, UnreadableFolderThrowsAndWritesNothing) {
  write_fake_study();
  fs::permissions(dir_, fs::perms::none);
  std::error_code ec;
  const fs::directory_iterator probe(dir_, ec);
  if (!ec) GTEST_SKIP() << "this user reads folders without permission (root)";
  EXPECT_THROW(write_report_page(dir_, study(), kCommand), core::RuntimeFailure);
  fs::permissions(dir_, fs::perms::owner_all);
  EXPECT_FALSE(fs::exists(dir_ / "index.html"));
  for (const std::string& name : names_in(dir_)) EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
}

// The real thing: a copy of the paper-training results (results/ itself is left alone).
TEST_F(ReportPage, RendersACopyOfThePaperTrainingResults) {
  const fs::path source = fs::path(MOESYS_SOURCE_DIR) / "results" / "paper-training";
  if (!fs::is_directory(source)) GTEST_SKIP() << "no results/paper-training in this tree";
  fs::copy(source, dir_, fs::copy_options::recursive);
  fs::remove(dir_ / "index.html");
  std::size_t pngs = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) pngs += entry.path().extension() == ".png";
  ASSERT_GT(pngs, 0u);
  std::ifstream study_file(fs::path(MOESYS_SOURCE_DIR) / "experiments" / "paper-training.json");
  const json paper = json::parse(study_file);
  write_report_page(dir_, paper, "build/moesys experiment experiments/paper-training.json");
  const std::string html = read_text(dir_ / "index.html");
  EXPECT_EQ(count(html, "data:image/png;base64,"), pngs);
  EXPECT_EQ(count(section(html, "runs"), "<tr"), count(read_text(dir_ / "runs.csv"), "\n"));  // header + runs
  EXPECT_EQ(count(section(html, "ratios"), "<tr"), count(read_text(dir_ / "ratios.csv"), "\n"));
  EXPECT_GT(count(section(html, "ratios"), "ratio better"), 0u);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
}

}  // namespace
}  // namespace moesys::studies

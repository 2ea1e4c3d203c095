// A zip archive's table of contents, as torch.save (since torch 1.6) writes it: entries stored
// uncompressed, each one's bytes a plain range of the file (formats.md §7). Read from the central
// directory (zip64 included: a shard of a 100B-parameter model exceeds 4 GB), checked against each
// local header; compressed or encrypted entries are refused, never inflated.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lm {

class MappedFile;

struct ZipEntry {
  std::string name;
  uint64_t offset = 0;  // of the entry's bytes in the file
  uint64_t size = 0;
};

class ZipArchive {
 public:
  // "PK\3\4" (a local file header) at the start: a zip archive.
  static bool has_magic(const uint8_t* p, size_t n);
  // Reads the central directory of `file`; Data errors name the file ("refused" for what is
  // valid zip but not a plain stored archive: compression, encryption, multi-disk archives).
  static ZipArchive parse(std::shared_ptr<MappedFile> file);

  const std::string& path() const;
  const std::vector<ZipEntry>& entries() const { return entries_; }  // in central-directory order
  const ZipEntry* find(const std::string& name) const;
  const uint8_t* data(const ZipEntry& e) const;
  const std::shared_ptr<MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<ZipEntry> entries_;
  std::vector<uint32_t> by_name_;  // indices into entries_, sorted by name
};

}  // namespace lm

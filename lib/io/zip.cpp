#include "io/zip.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lm {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kLocator64Sig = 0x07064b50;
constexpr size_t kEndSize = 22, kLocator64Size = 20, kEnd64Size = 56, kCentralSize = 46, kLocalSize = 30;

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t u32(const uint8_t* p) { return static_cast<uint32_t>(u16(p)) | static_cast<uint32_t>(u16(p + 2)) << 16; }
uint64_t u64(const uint8_t* p) { return static_cast<uint64_t>(u32(p)) | static_cast<uint64_t>(u32(p + 4)) << 32; }

}  // namespace

bool ZipArchive::has_magic(const uint8_t* p, size_t n) { return n >= 4 && u32(p) == kLocalSig; }

ZipArchive ZipArchive::parse(std::shared_ptr<MappedFile> file) {
  const std::string q = quote(file->path());
  const uint8_t* p = file->data();
  const uint64_t size = file->size();
  auto bad = [&](const std::string& why) { fail_data(cat(q, ": zip archive: ", why)); };
  if (size < kEndSize) bad(cat(size, " bytes, too short for the end of central directory record"));
  // The end record sits at the end, followed by a comment of at most 65535 bytes.
  uint64_t end = size - kEndSize;
  const uint64_t lowest = end > 65535 ? end - 65535 : 0;
  for (;; --end) {
    if (u32(p + end) == kEndSig && end + kEndSize + u16(p + end + 20) == size) break;
    if (end == lowest) bad("no end of central directory record (truncated, or not a zip file)");
  }
  const uint8_t* e = p + end;
  if (u16(e + 4) != 0 || u16(e + 6) != 0) fail_data(cat(q, ": a multi-disk zip archive is not supported"));
  uint64_t count = u16(e + 10), cd_size = u32(e + 12), cd_offset = u32(e + 16);
  uint64_t cd_limit = end;  // the central directory ends before the end record(s)
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    // zip64: a locator just before the end record names the zip64 end record.
    if (end < kLocator64Size || u32(p + end - kLocator64Size) != kLocator64Sig) bad("zip64 fields without a zip64 locator");
    const uint8_t* loc = p + end - kLocator64Size;
    const uint64_t end64 = u64(loc + 8);
    if (u32(loc + 4) != 0 || u32(loc + 16) > 1) fail_data(cat(q, ": a multi-disk zip archive is not supported"));
    if (end64 > end - kLocator64Size || end - kLocator64Size - end64 < kEnd64Size || u32(p + end64) != kEnd64Sig)
      bad("bad zip64 end of central directory record");
    const uint8_t* z = p + end64;
    if (u32(z + 16) != 0 || u32(z + 20) != 0) fail_data(cat(q, ": a multi-disk zip archive is not supported"));
    count = u64(z + 32);
    cd_size = u64(z + 40);
    cd_offset = u64(z + 48);
    cd_limit = end64;
  }
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    bad(cat("central directory [", cd_offset, ", +", cd_size, ") lies outside the file (", size, " bytes)"));
  if (count > cd_size / kCentralSize) bad(cat(count, " entries cannot fit a central directory of ", cd_size, " bytes"));

  ZipArchive z;
  z.file_ = file;
  z.entries_.reserve(count);
  const uint8_t* c = p + cd_offset;
  const uint8_t* const c_end = c + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (static_cast<uint64_t>(c_end - c) < kCentralSize || u32(c) != kCentralSig) bad(cat("central directory entry ", i, " is damaged"));
    const uint16_t flags = u16(c + 8), method = u16(c + 10);
    const uint16_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
    if (static_cast<uint64_t>(c_end - c) < kCentralSize + name_len + extra_len + comment_len)
      bad(cat("central directory entry ", i, " runs past the directory"));
    ZipEntry entry;
    entry.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    const std::string qn = quote(entry.name);
    if (flags & 1) fail_data(cat(q, ": zip entry ", qn, " is encrypted"));
    if (method != 0)
      fail_data(cat(q, ": zip entry ", qn, " is compressed (method ", method,
                    "): torch.save stores entries uncompressed; lmkit reads only stored entries"));
    uint64_t csize = u32(c + 20), usize = u32(c + 24), local = u32(c + 42);
    const uint32_t disk = u16(c + 34);
    if (usize == 0xFFFFFFFF || csize == 0xFFFFFFFF || local == 0xFFFFFFFF || disk == 0xFFFF) {
      // The zip64 extra field holds, in this order, the fields whose 32-bit value is all ones.
      const uint8_t* x = c + kCentralSize + name_len;
      const uint8_t* const x_end = x + extra_len;
      bool found = false;
      while (x_end - x >= 4) {
        const uint16_t id = u16(x), len = u16(x + 2);
        if (x_end - x - 4 < len) bad(cat("zip entry ", qn, ": extra field runs past its record"));
        if (id == 1) {
          const uint8_t* f = x + 4;
          uint16_t left = len;
          for (uint64_t* v : {&usize, &csize, &local}) {
            if (*v != 0xFFFFFFFF) continue;
            if (left < 8) bad(cat("zip entry ", qn, ": zip64 extra field too short"));
            *v = u64(f), f += 8, left -= 8;
          }
          found = true;
          break;
        }
        x += 4 + len;
      }
      if (!found) bad(cat("zip entry ", qn, ": 32-bit size or offset fields at their maximum without a zip64 extra field"));
    }
    if (disk != 0 && disk != 0xFFFF) fail_data(cat(q, ": a multi-disk zip archive is not supported"));
    if (csize != usize) bad(cat("zip entry ", qn, ": stored, yet its sizes differ (", csize, " and ", usize, ")"));
    // The local header (its extra field may differ from the central one) precedes the bytes.
    if (local > cd_offset || cd_offset - local < kLocalSize || u32(p + local) != kLocalSig)
      bad(cat("zip entry ", qn, ": no local header at offset ", local));
    const uint8_t* l = p + local;
    const uint64_t header = kLocalSize + u16(l + 26) + static_cast<uint64_t>(u16(l + 28));
    if (cd_offset - local < header) bad(cat("zip entry ", qn, ": local header runs into the central directory"));
    if (u16(l + 26) != name_len || std::memcmp(l + kLocalSize, c + kCentralSize, name_len) != 0)
      bad(cat("zip entry ", qn, ": local header names another entry"));
    if (u16(l + 8) != method) bad(cat("zip entry ", qn, ": local header disagrees on the compression method"));
    entry.offset = local + header;
    if (usize > cd_offset - entry.offset)
      bad(cat("zip entry ", qn, ": ", usize, " bytes at offset ", entry.offset, " run into the central directory (truncated?)"));
    entry.size = usize;
    z.entries_.push_back(std::move(entry));
    c += kCentralSize + name_len + extra_len + comment_len;
  }
  if (z.entries_.size() > UINT32_MAX) bad("too many entries");
  z.by_name_.resize(z.entries_.size());
  for (uint32_t i = 0; i < z.by_name_.size(); ++i) z.by_name_[i] = i;
  const auto& entries = z.entries_;
  std::sort(z.by_name_.begin(), z.by_name_.end(), [&](uint32_t a, uint32_t b) { return entries[a].name < entries[b].name; });
  for (size_t i = 1; i < z.by_name_.size(); ++i)
    if (entries[z.by_name_[i]].name == entries[z.by_name_[i - 1]].name)
      bad(cat("entry ", quote(entries[z.by_name_[i]].name), " appears twice"));
  return z;
}

const std::string& ZipArchive::path() const { return file_->path(); }

const ZipEntry* ZipArchive::find(const std::string& name) const {
  const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                   [&](uint32_t i, const std::string& n) { return entries_[i].name < n; });
  return it == by_name_.end() || entries_[*it].name != name ? nullptr : &entries_[*it];
}

const uint8_t* ZipArchive::data(const ZipEntry& e) const { return file_->data() + e.offset; }

}  // namespace lm

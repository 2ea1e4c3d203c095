#include "io/checkpoint_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/json.h"
#include "io/stream.h"

namespace lm {

namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// The files a new checkpoint replaces, in the order lmkit's reader prefers them, least first:
// unlinking them in this order leaves the new weights winning only at the last unlink.
constexpr const char* kReplaced[] = {"consolidated.safetensors", "model.safetensors", kShardIndexName};

std::string join(const std::string& dir, const std::string& name) { return dir == "/" ? "/" + name : dir + "/" + name; }

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

mode_t current_umask() {
  const mode_t m = ::umask(0);
  ::umask(m);
  return m;
}

void move(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) fail_io("cannot rename the new file to", to);
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) fail_io("cannot remove", path);
}

// The directory's entries on disk, so the renames survive a power loss.
void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void write_text(const std::string& path, const std::string& text) {
  auto sink = open_output(path);
  sink->write(text.data(), text.size());
  sink->finish();
}

void copy_file(const std::string& from, const std::string& to) {
  auto in = open_raw_input(from);
  auto out = open_output(to);
  std::vector<char> buf(1 << 20);
  while (const size_t n = in->read_some(buf.data(), buf.size())) out->write(buf.data(), n);
  out->finish();
}

// "model-00001-of-00003.safetensors", with ".old" or ".oldN" before the extension for an old
// shard given another name: the names a writer of this layout makes.
bool is_shard_file_name(const std::string& n) {
  auto digits = [&](size_t at, size_t count) {
    if (at + count > n.size()) return false;
    for (size_t i = at; i < at + count; ++i)
      if (n[i] < '0' || n[i] > '9') return false;
    return true;
  };
  if (n.rfind("model-", 0) != 0 || !digits(6, 5) || n.compare(11, 4, "-of-") != 0 || !digits(15, 5)) return false;
  std::string rest = n.substr(20);
  if (rest.rfind(".old", 0) == 0) {
    size_t i = 4;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') ++i;
    rest = rest.substr(i);
  }
  return rest == ".safetensors";
}

// The checkpoint's index as found: its JSON (in the file's key order, as it is written back) and
// the shard files it lists (plain names only). An index lmkit's reader refuses (not JSON, nested
// too deep, a repeated key) lists none: it held no checkpoint to keep.
struct OldIndex {
  ojson doc;
  std::vector<std::string> shards;
};

OldIndex read_old_index(const std::string& dir) {
  OldIndex old;
  const std::string path = join(dir, kShardIndexName);
  if (!exists(path)) return old;
  try {
    old.doc = parse_ordered_json_strict(read_text_file(path), "");
  } catch (const Error&) {
    return {};
  }
  if (!old.doc.is_object() || !old.doc.contains("weight_map") || !old.doc["weight_map"].is_object()) return old;
  std::set<std::string> seen;
  for (const auto& [tensor, file] : old.doc["weight_map"].items()) {
    if (!file.is_string()) continue;
    const std::string f = file.get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") continue;
    if (seen.insert(f).second) old.shards.push_back(f);
  }
  return old;
}

// Gives each shard of the old index that the new set overwrites another name (a hard link, or a
// copy where links are not supported), then points the old index at those names: the old
// checkpoint stays whole and readable while the new files take the names.
void move_old_shards_aside(const std::string& dir, OldIndex& old, const std::set<std::string>& new_names,
                           const std::string& stage) {
  const std::set<std::string> listed(old.shards.begin(), old.shards.end());
  std::map<std::string, std::string> aside;
  for (std::string& shard : old.shards) {
    if (!new_names.count(shard)) continue;
    const size_t ext = shard.size() >= 12 && shard.compare(shard.size() - 12, 12, ".safetensors") == 0 ? shard.size() - 12 : shard.size();
    std::string other;
    for (int k = 0;; ++k) {  // a name neither the old index nor the new set uses
      other = shard.substr(0, ext) + ".old" + (k ? std::to_string(k) : "") + shard.substr(ext);
      if (!listed.count(other) && !new_names.count(other)) break;
    }
    remove_file(join(dir, other));  // a leftover of a writer killed before it switched the index
    if (::link(join(dir, shard).c_str(), join(dir, other).c_str()) != 0) {
      if (errno == ENOENT) continue;  // the old checkpoint was missing it already
      if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP && errno != EXDEV && errno != EMLINK)
        fail_io("cannot link an old shard aside as", join(dir, other));
      copy_file(join(dir, shard), join(dir, other));
    }
    aside[shard] = other;
    shard = other;
  }
  if (aside.empty()) return;
  for (auto& [tensor, file] : old.doc["weight_map"].items())
    if (file.is_string() && aside.count(file.get<std::string>())) file = aside[file.get<std::string>()];
  const std::string staged = join(stage, "previous.index.json");  // (the new index is staged as kShardIndexName)
  write_text(staged, old.doc.dump(2) + "\n");
  move(staged, join(dir, kShardIndexName));
}

// Every file of the new checkpoint, written into `dir` under its final name.
void write_files(const std::string& dir, const CheckpointDirFiles& files, const std::vector<std::string>& weight_names) {
  if (!files.single_name.empty()) {
    files.write_single(join(dir, files.single_name));
  } else {
    json weight_map = json::object();
    for (size_t i = 0; i < files.shards.size(); ++i) {
      files.shards[i].write(join(dir, weight_names[i]));
      for (const std::string& t : files.shards[i].tensors) weight_map[t] = weight_names[i];
    }
    json index;
    index["metadata"] = {{"total_size", files.total_size}};
    index["weight_map"] = weight_map;
    write_text(join(dir, kShardIndexName), index.dump(2) + "\n");
  }
  for (const auto& [name, text] : files.config_files) write_text(join(dir, name), text);
}

}  // namespace

std::string shard_file_name(size_t i, size_t n) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return name;
}

std::vector<std::string> write_checkpoint_dir(const std::string& given, const CheckpointDirFiles& files) {
  std::string dir = given;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const bool sharded = files.single_name.empty();
  std::vector<std::string> weight_names;
  if (sharded)
    for (size_t i = 0; i < files.shards.size(); ++i) weight_names.push_back(shard_file_name(i, files.shards.size()));
  else
    weight_names.push_back(files.single_name);
  std::vector<std::string> names = weight_names;
  if (sharded) names.push_back(kShardIndexName);
  for (const auto& file : files.config_files) names.push_back(file.first);
  std::vector<std::string> written;
  for (const std::string& n : names) written.push_back(join(dir, n));

  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) fail_io("cannot open", dir);
    // A new directory: built whole beside its target, then renamed into place.
    TempDir stage(dir, "cannot create directory");
    ::chmod(stage.path().c_str(), 0777 & ~current_umask());
    write_files(stage.path(), files, weight_names);
    {
      // The signal thread must not be emptying the directory (through its own handle) while it
      // becomes the checkpoint.
      CommitSection commit;
      if (::rename(stage.path().c_str(), dir.c_str()) != 0) fail_io("cannot create directory", dir);
      stage.release();
    }
    const size_t slash = dir.rfind('/');
    sync_dir(slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash));
    return written;
  }
  if (!S_ISDIR(st.st_mode)) fail(ErrorKind::Io, cat("cannot write a checkpoint directory ", quote(dir), ": not a directory"));

  // An existing directory. One lmkit writer at a time (a second one waits): each replaces the
  // checkpoint whole, and neither takes the other's new shards for leftovers.
  const int lock_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock_fd < 0) fail_io("cannot open", dir);
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock_fd};
  while (::flock(lock_fd, LOCK_EX) != 0)
    if (errno != EINTR) fail_io("cannot lock", dir);
  // The new files in a temporary directory inside it first.
  OldIndex old = read_old_index(dir);
  TempDir stage(join(dir, "checkpoint"));
  write_files(stage.path(), files, weight_names);
  const std::set<std::string> new_weights(weight_names.begin(), weight_names.end());
  {
    CommitSection commit;  // a signal now waits until the new checkpoint is in place
    move_old_shards_aside(dir, old, new_weights, stage.path());
    if (sharded) {
      for (const std::string& n : weight_names) move(join(stage.path(), n), join(dir, n));
      move(join(stage.path(), kShardIndexName), join(dir, kShardIndexName));  // the new checkpoint, for lmkit
      for (const char* n : kReplaced)
        if (n != std::string(kShardIndexName)) remove_file(join(dir, n));      // ... and for transformers
    } else {
      move(join(stage.path(), files.single_name), join(dir, files.single_name));
      for (const char* n : kReplaced)
        if (n != files.single_name) remove_file(join(dir, n));  // the last one that existed was the switch
    }
    for (const auto& file : files.config_files) move(join(stage.path(), file.first), join(dir, file.first));
    sync_dir(dir);
  }
  // What is left of the old checkpoint: the shards its index listed, and shards of writers that
  // were killed before they switched an index (no index lists them).
  for (const std::string& s : old.shards)
    if (!new_weights.count(s)) ::unlink(join(dir, s).c_str());
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> orphans;
    while (const dirent* e = ::readdir(d))
      if (is_shard_file_name(e->d_name) && !new_weights.count(e->d_name)) orphans.emplace_back(e->d_name);
    ::closedir(d);
    for (const std::string& n : orphans) ::unlink(join(dir, n).c_str());
  }
  return written;
}

}  // namespace lm

/* glibc-only symbols that the objects of Debian's libstdc++.a and libgcc_eh.a refer to, given on musl (test/support/musl.ts). */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <sys/random.h>

char __libc_single_threaded = 0;

uint32_t arc4random(void) {
  uint32_t value = 0;
  while (getrandom(&value, sizeof value, 0) != sizeof value) {}
  return value;
}

struct dl_find_object {
  unsigned long long dlfo_flags;
  void *dlfo_map_start;
  void *dlfo_map_end;
  struct link_map *dlfo_link_map;
  void *dlfo_eh_frame;
  unsigned long long reserved[7];
};

struct search { uintptr_t pc; struct dl_find_object *out; int found; };

static int visit(struct dl_phdr_info *info, size_t size, void *data) {
  struct search *s = data;
  (void)size;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  void *eh = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *p = &info->dlpi_phdr[i];
    if (p->p_type == PT_LOAD) {
      uintptr_t start = info->dlpi_addr + p->p_vaddr, end = start + p->p_memsz;
      if (start < lo) lo = start;
      if (end > hi) hi = end;
    } else if (p->p_type == PT_GNU_EH_FRAME) {
      eh = (void *)(info->dlpi_addr + p->p_vaddr);
    }
  }
  if (s->pc < lo || s->pc >= hi) return 0;
  s->out->dlfo_flags = 0;
  s->out->dlfo_map_start = (void *)lo;
  s->out->dlfo_map_end = (void *)hi;
  s->out->dlfo_link_map = 0;
  s->out->dlfo_eh_frame = eh;
  s->found = eh != 0;
  return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *out) {
  struct search s = { (uintptr_t)pc, out, 0 };
  dl_iterate_phdr(visit, &s);
  return s.found ? 0 : -1;
}

/*
 * shp_example.c: every call of the C API, checked. Built and run under AddressSanitizer (with
 * LeakSanitizer) by examples/c/run.sh:
 *
 *   shp_example HOME OCI_DIR TAG LAYER_DIGEST EXPORT_DIR
 *
 * HOME is a store directory (created), OCI_DIR an OCI image layout holding image TAG, LAYER_DIGEST
 * the digest of one of its layers (a real blob to write and read back), EXPORT_DIR where the image
 * is exported to. Prints one line per failed check and a closing "N passed, N failed" line.
 */
#include "shp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (cond) {                                              \
            passed++;                                            \
        } else {                                                 \
            failed++;                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
        }                                                        \
    } while (0)

/* A call expected to return `want`; on a failure the message must be set. */
#define EXPECT(want, call)                                                                        \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        const char *m_ = shp_last_error_message();                                                \
        CHECK(rc_ == (want), "%s: got %s, want %s (%s)", #call, shp_status_name(rc_),             \
              shp_status_name(want), m_ ? m_ : "no message");                                     \
        CHECK((rc_ == SHP_OK) == (m_ == NULL), "%s: message %s after %s", #call, m_ ? m_ : "NULL", \
              shp_status_name(rc_));                                                              \
    } while (0)

static const char HELLO[] = "hello, shp\n";
static const char HELLO_DIGEST[] = "sha256:f89092cbdfd27204223179bc4b189d9f5f6e77cf067000a1951a676fdef59564";
/* sha256 of "hello, shq\n": the wrong digest for HELLO */
static const char OTHER_DIGEST[] = "sha256:21e2d1e70efc0c63ab86faa94cfd48a5c07f9a4c296215c38534dc32b7a38186";

/* Reads a whole blob; returns a malloc'd buffer (caller frees) and its size, or NULL. */
static unsigned char *read_blob(shp_store *store, const char *digest, size_t chunk, size_t *size) {
    shp_blob_reader *r = NULL;
    if (shp_blob_reader_open(store, digest, &r) != SHP_OK) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (len + chunk > cap) {
            cap = (len + chunk) * 2;
            buf = realloc(buf, cap);
        }
        int64_t n = shp_blob_reader_read(r, buf + len, chunk);
        if (n < 0) {
            fprintf(stderr, "read %s: %s: %s\n", digest, shp_status_name((int)-n), shp_last_error_message());
            free(buf);
            shp_blob_reader_free(r);
            return NULL;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    /* reading past the end keeps returning 0 */
    CHECK(shp_blob_reader_read(r, buf, 1) == 0, "read after end");
    shp_blob_reader_free(r);
    *size = len;
    return buf;
}

/* Writes `len` bytes in pieces of `piece`; returns the commit status. */
static int write_blob(shp_store *store, const char *expected, const void *data, size_t len, size_t piece,
                      char *digest_out) {
    shp_blob_writer *w = NULL;
    int rc = shp_blob_writer_new(store, expected, &w);
    if (rc != SHP_OK) return rc;
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        rc = shp_blob_writer_write(w, (const uint8_t *)data + off, n);
        if (rc != SHP_OK) {
            shp_blob_writer_free(w);
            return rc;
        }
    }
    rc = shp_blob_writer_commit(w, digest_out, digest_out ? SHP_DIGEST_BUF_LEN : 0);
    shp_blob_writer_free(w);
    return rc;
}

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    *size = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

struct list_ctx {
    int count, saw_hello, saw_layer, stop_after;
    const char *layer;
};

static int on_digest(const char *digest, void *ctx) {
    struct list_ctx *c = ctx;
    c->count++;
    if (strcmp(digest, HELLO_DIGEST) == 0) c->saw_hello = 1;
    if (strcmp(digest, c->layer) == 0) c->saw_layer = 1;
    return c->stop_after && c->count >= c->stop_after;
}

/* Threads sharing one store handle: each writes its own blobs and reads them back. */
struct worker {
    shp_store *store;
    int id, ok;
};

static void *work(void *arg) {
    struct worker *wk = arg;
    wk->ok = 1;
    for (int i = 0; i < 4; i++) {
        char data[64], digest[SHP_DIGEST_BUF_LEN];
        int n = snprintf(data, sizeof data, "thread %d blob %d\n", wk->id, i);
        if (write_blob(wk->store, NULL, data, (size_t)n, 5, digest) != SHP_OK) {
            fprintf(stderr, "thread %d: write: %s\n", wk->id, shp_last_error_message());
            wk->ok = 0;
            continue;
        }
        size_t size = 0;
        unsigned char *back = read_blob(wk->store, digest, 7, &size);
        if (!back || size != (size_t)n || memcmp(back, data, size) != 0) wk->ok = 0;
        free(back);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOME OCI_DIR TAG LAYER_DIGEST EXPORT_DIR\n", argv[0]);
        return 2;
    }
    const char *home = argv[1], *oci = argv[2], *tag = argv[3], *layer = argv[4], *export_dir = argv[5];
    char digest[SHP_DIGEST_BUF_LEN], cid[SHP_CID_BUF_LEN], ref[4096];
    uint64_t size = 0;

    /* --- version: the library linked is the one this header came with ----------------------- */
    const char *linked = shp_version();
    CHECK(linked != NULL && strcmp(linked, SHP_VERSION) == 0, "shp_version() is %s, SHP_VERSION is %s",
          linked ? linked : "NULL", SHP_VERSION);
    char parts[32];
    snprintf(parts, sizeof parts, "%d.%d.%d", SHP_VERSION_MAJOR, SHP_VERSION_MINOR, SHP_VERSION_PATCH);
    CHECK(strcmp(parts, SHP_VERSION) == 0, "SHP_VERSION_MAJOR/MINOR/PATCH give %s, SHP_VERSION is %s", parts,
          SHP_VERSION);
    printf("shp_example: libshp_ffi %s\n", linked ? linked : "NULL");

    /* --- NULL arguments: SHP_INVALID_ARGUMENT, never a crash ------------------------------- */
    shp_store *store = (shp_store *)0x1;
    EXPECT(SHP_INVALID_ARGUMENT, shp_store_open(NULL, &store));
    CHECK(store == NULL, "out is set to NULL on failure");
    EXPECT(SHP_INVALID_ARGUMENT, shp_store_open(home, NULL));
    EXPECT(SHP_INVALID_ARGUMENT, shp_store_open("", &store));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_stat(NULL, HELLO_DIGEST, &size));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_new(NULL, NULL, NULL));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_write(NULL, (const uint8_t *)"x", 1));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_commit(NULL, digest, sizeof digest));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_reader_open(NULL, HELLO_DIGEST, NULL));
    CHECK(shp_blob_reader_read(NULL, (uint8_t *)digest, 1) == -SHP_INVALID_ARGUMENT, "read(NULL)");
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_list(NULL, on_digest, NULL));
    EXPECT(SHP_INVALID_ARGUMENT, shp_image_import(NULL, "oci:x", cid, sizeof cid));
    EXPECT(SHP_INVALID_ARGUMENT, shp_image_export(NULL, "x", "oci:y"));
    shp_store_free(NULL);
    shp_blob_writer_free(NULL);
    shp_blob_reader_free(NULL);

    /* --- open (creates the store) ------------------------------------------------------------ */
    EXPECT(SHP_OK, shp_store_open(home, &store));
    if (!store) return 1;
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_stat(store, NULL, &size));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_stat(store, HELLO_DIGEST, NULL));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_stat(store, "sha256:nothex", &size));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_list(store, NULL, NULL));
    EXPECT(SHP_INVALID_ARGUMENT, shp_image_import(store, NULL, cid, sizeof cid));
    EXPECT(SHP_INVALID_ARGUMENT, shp_image_import(store, "tarball:x", cid, sizeof cid));
    EXPECT(SHP_INVALID_ARGUMENT, shp_image_export(store, NULL, "oci:y"));
    EXPECT(SHP_INVALID_ARGUMENT, shp_image_export(store, "x", NULL));
    EXPECT(SHP_NOT_FOUND, shp_blob_stat(store, HELLO_DIGEST, &size));
    shp_blob_reader *r = (shp_blob_reader *)0x1;
    EXPECT(SHP_NOT_FOUND, shp_blob_reader_open(store, HELLO_DIGEST, &r));
    CHECK(r == NULL, "reader out is NULL on failure");

    /* --- write with the expected digest, in pieces ------------------------------------------- */
    shp_blob_writer *w = NULL;
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_new(store, "sha256:ABC", &w));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_new_kind(store, NULL, 7, &w));
    EXPECT(SHP_OK, shp_blob_writer_new(store, HELLO_DIGEST, &w));
    EXPECT(SHP_OK, shp_blob_writer_write(w, (const uint8_t *)HELLO, 5));
    EXPECT(SHP_OK, shp_blob_writer_write(w, NULL, 0));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_write(w, NULL, 3));
    EXPECT(SHP_OK, shp_blob_writer_write(w, (const uint8_t *)HELLO + 5, strlen(HELLO) - 5));
    EXPECT(SHP_BUFFER_TOO_SMALL, shp_blob_writer_commit(w, digest, 10));
    EXPECT(SHP_OK, shp_blob_writer_commit(w, digest, sizeof digest));
    CHECK(strcmp(digest, HELLO_DIGEST) == 0, "commit digest %s", digest);
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_commit(w, digest, sizeof digest));
    EXPECT(SHP_INVALID_ARGUMENT, shp_blob_writer_write(w, (const uint8_t *)"x", 1));
    shp_blob_writer_free(w);

    EXPECT(SHP_OK, shp_blob_stat(store, HELLO_DIGEST, &size));
    CHECK(size == strlen(HELLO), "stat size %llu", (unsigned long long)size);
    size_t n = 0;
    unsigned char *back = read_blob(store, HELLO_DIGEST, 3, &n);
    CHECK(back && n == strlen(HELLO) && memcmp(back, HELLO, n) == 0, "hello reads back");
    free(back);

    /* Without an expected digest, the commit reports it; storing twice is fine. */
    EXPECT(SHP_OK, write_blob(store, NULL, HELLO, strlen(HELLO), 100, digest));
    CHECK(strcmp(digest, HELLO_DIGEST) == 0, "digest without expectation %s", digest);
    EXPECT(SHP_OK, write_blob(store, NULL, "", 0, 1, NULL));

    /* --- a wrong digest: SHP_DIGEST_MISMATCH, nothing stored ---------------------------------- */
    EXPECT(SHP_DIGEST_MISMATCH, write_blob(store, OTHER_DIGEST, HELLO, strlen(HELLO), 4, digest));
    EXPECT(SHP_NOT_FOUND, shp_blob_stat(store, OTHER_DIGEST, &size));

    /* --- a real layer, written in 64 KiB pieces and read back byte for byte ------------------- */
    snprintf(ref, sizeof ref, "%s/blobs/sha256/%s", oci, layer + strlen("sha256:"));
    size_t layer_len = 0;
    unsigned char *layer_bytes = slurp(ref, &layer_len);
    CHECK(layer_bytes != NULL, "read %s", ref);
    if (layer_bytes) {
        EXPECT(SHP_OK, write_blob(store, layer, layer_bytes, layer_len, 1 << 16, digest));
        CHECK(strcmp(digest, layer) == 0, "layer digest %s", digest);
        EXPECT(SHP_OK, shp_blob_stat(store, layer, &size));
        CHECK(size == layer_len, "layer size %llu, want %zu", (unsigned long long)size, layer_len);
        back = read_blob(store, layer, 100000, &n);
        CHECK(back && n == layer_len && memcmp(back, layer_bytes, n) == 0, "layer reads back byte-identical");
        free(back);
        /* a layer with one flipped byte under the right digest is refused */
        layer_bytes[layer_len / 2] ^= 1;
        int rc = write_blob(store, layer, layer_bytes, layer_len, 1 << 16, NULL);
        CHECK(rc == SHP_DIGEST_MISMATCH || rc == SHP_INVALID_INPUT, "flipped layer: %s", shp_status_name(rc));
        free(layer_bytes);
    }

    /* --- a reader outlives its store handle ----------------------------------------------------- */
    shp_store *second = NULL;
    EXPECT(SHP_OK, shp_store_open(home, &second));
    r = NULL;
    EXPECT(SHP_OK, shp_blob_reader_open(second, HELLO_DIGEST, &r));
    shp_store_free(second);
    unsigned char small[64];
    int64_t got = shp_blob_reader_read(r, small, sizeof small);
    CHECK(got == (int64_t)strlen(HELLO) && memcmp(small, HELLO, strlen(HELLO)) == 0, "read after store free");
    CHECK(shp_blob_reader_read(r, small, 0) == 0, "zero-length read");
    CHECK(shp_blob_reader_read(r, NULL, 1) == -SHP_INVALID_ARGUMENT, "NULL buffer");
    CHECK(shp_blob_reader_read(r, small, sizeof small) == 0, "end after a refused read");
    shp_blob_reader_free(r);

    /* --- many threads on one handle ------------------------------------------------------------- */
    enum { THREADS = 4 };
    pthread_t th[THREADS];
    struct worker wk[THREADS];
    for (int i = 0; i < THREADS; i++) {
        wk[i] = (struct worker){.store = store, .id = i};
        pthread_create(&th[i], NULL, work, &wk[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK(wk[i].ok, "thread %d", i);
    }

    /* --- import, list, export -------------------------------------------------------------------- */
    snprintf(ref, sizeof ref, "oci:%s:%s", oci, tag);
    EXPECT(SHP_BUFFER_TOO_SMALL, shp_image_import(store, ref, cid, 8));
    EXPECT(SHP_OK, shp_image_import(store, ref, cid, sizeof cid));
    CHECK(strlen(cid) == SHP_CID_BUF_LEN - 1 && cid[0] == 'b', "root CID %s", cid);
    char again[SHP_CID_BUF_LEN];
    EXPECT(SHP_OK, shp_image_import(store, ref, again, sizeof again));
    CHECK(strcmp(cid, again) == 0, "import is deterministic: %s vs %s", cid, again);
    EXPECT(SHP_IO, shp_image_import(store, "oci:/nonexistent/dir", NULL, 0));

    struct list_ctx lc = {.layer = layer};
    EXPECT(SHP_OK, shp_blob_list(store, on_digest, &lc));
    CHECK(lc.saw_hello && lc.saw_layer, "list has the hello blob and the layer (%d digests)", lc.count);
    CHECK(lc.count >= 3 + 4 * THREADS, "list has %d digests", lc.count);
    struct list_ctx stop = {.layer = layer, .stop_after = 2};
    EXPECT(SHP_ABORTED, shp_blob_list(store, on_digest, &stop));
    CHECK(stop.count == 2, "callback stop after %d", stop.count);

    snprintf(ref, sizeof ref, "oci:%s:%s", export_dir, tag);
    EXPECT(SHP_OK, shp_image_export(store, cid, ref));
    snprintf(ref, sizeof ref, "oci:%s:by-name", export_dir);
    EXPECT(SHP_OK, shp_image_export(store, tag, ref));
    EXPECT(SHP_NOT_FOUND, shp_image_export(store, "no-such-image", ref));

    /* --- images from stored blobs: top digest, commit, resolve ---------------------------------- */
    char top[SHP_DIGEST_BUF_LEN] = "", top2[SHP_DIGEST_BUF_LEN] = "", root[SHP_CID_BUF_LEN] = "";
    EXPECT(SHP_BUFFER_TOO_SMALL, shp_image_top_digest(store, tag, top, 8));
    EXPECT(SHP_OK, shp_image_top_digest(store, tag, top, sizeof top));
    EXPECT(SHP_OK, shp_image_top_digest(store, cid, top2, sizeof top2));
    CHECK(strcmp(top, top2) == 0 && strncmp(top, "sha256:", 7) == 0, "top digest %s / %s", top, top2);
    EXPECT(SHP_NOT_FOUND, shp_image_top_digest(store, "no-such-image", top2, sizeof top2));
    size_t mlen = 0;
    unsigned char *manifest = read_blob(store, top, 4096, &mlen);
    CHECK(manifest != NULL && mlen > 0, "manifest %s reads back", top);
    if (manifest) {
        const char *mt = "application/vnd.oci.image.manifest.v1+json";
        EXPECT(SHP_INVALID_ARGUMENT, shp_image_commit(store, NULL, mlen, mt, "committed", NULL, 0));
        EXPECT(SHP_BUFFER_TOO_SMALL, shp_image_commit(store, manifest, mlen, mt, "committed", root, 8));
        EXPECT(SHP_NOT_FOUND, shp_image_resolve(store, "committed", NULL, 0));
        EXPECT(SHP_OK, shp_image_commit(store, manifest, mlen, mt, "committed", root, sizeof root));
        CHECK(strlen(root) == SHP_CID_BUF_LEN - 1 && root[0] == 'b', "committed root %s", root);
        char resolved[SHP_CID_BUF_LEN];
        EXPECT(SHP_OK, shp_image_resolve(store, "committed", resolved, sizeof resolved));
        CHECK(strcmp(resolved, root) == 0, "resolve gives %s, commit gave %s", resolved, root);
        EXPECT(SHP_OK, shp_image_top_digest(store, "committed", top2, sizeof top2));
        CHECK(strcmp(top, top2) == 0, "committed top digest %s, want %s", top2, top);
        free(manifest);
    }
    /* A manifest whose layer the store lacks: refused, the name untouched. */
    static const char LONELY[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
        "\"sha256:21e2d1e70efc0c63ab86faa94cfd48a5c07f9a4c296215c38534dc32b7a38186\",\"size\":5},\"layers\":[]}";
    EXPECT(SHP_INVALID_INPUT, shp_image_commit(store, (const uint8_t *)LONELY, strlen(LONELY), NULL, "committed",
                                               NULL, 0));
    EXPECT(SHP_OK, shp_image_resolve(store, "committed", cid, sizeof cid));
    CHECK(strcmp(cid, root) == 0, "a refused commit moved the name to %s", cid);

    shp_store_free(store);
    printf("shp_example: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}

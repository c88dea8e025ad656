/*
 * switchboard-healthcheck: the container image's HEALTHCHECK. The image has
 * no shell, curl or wget, so this asks GET /readyz on 127.0.0.1 itself and
 * exits 0 on a 200, 1 otherwise (within 2 s). The port is SWITCHBOARD_PORT,
 * the setting the server listens by, or the first argument.
 * Built static by scripts/image.ts: cc -static -Os -o switchboard-healthcheck healthcheck.c
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *port_text = argc > 1 ? argv[1] : getenv("SWITCHBOARD_PORT");
  long port = port_text ? strtol(port_text, NULL, 10) : 8700;
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "switchboard-healthcheck: bad port %s\n", port_text);
    return 1;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 1;
  struct timeval timeout = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    perror("switchboard-healthcheck: connect");
    return 1;
  }
  const char request[] = "GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request, sizeof request - 1) != (ssize_t)(sizeof request - 1)) return 1;
  char answer[64] = {0};
  ssize_t got = 0, n;
  while (got < (ssize_t)sizeof answer - 1 && (n = read(fd, answer + got, sizeof answer - 1 - got)) > 0) got += n;
  close(fd);
  /* "HTTP/1.1 200 OK": the status code sits after the first space. */
  const char *space = strchr(answer, ' ');
  if (space && strncmp(space + 1, "200", 3) == 0) return 0;
  fprintf(stderr, "switchboard-healthcheck: /readyz answered %.*s\n", (int)strcspn(answer, "\r\n"), answer);
  return 1;
}

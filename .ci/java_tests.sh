#!/usr/bin/env bash
# JVM unit tests of the Android demo's pure-Java image core (android_demo/imagecore), without
# Gradle or the Android SDK: javac + JUnit 4 from Debian (`apt-get install -y junit4`).
# Run from anywhere inside the repository; exits non-zero when a test fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$root/android_demo/imagecore"
build="$root/java-build/imagecore"

find_jar() {
    local name
    for name in "$@"; do
        if [ -f "/usr/share/java/$name" ]; then
            echo "/usr/share/java/$name"
            return 0
        fi
    done
    return 1
}
junit=$(find_jar junit4.jar) || { echo "junit4.jar not found: apt-get install -y junit4" >&2; exit 2; }
hamcrest=$(find_jar hamcrest-core.jar hamcrest.jar hamcrest-all.jar) \
    || { echo "hamcrest jar not found: apt-get install -y junit4" >&2; exit 2; }
command -v javac >/dev/null || { echo "javac not found: a JDK 17 is required" >&2; exit 2; }

rm -rf "$build"
mkdir -p "$build/main" "$build/test"

mapfile -t main_sources < <(find "$module/src/main/java" -name '*.java' | sort)
mapfile -t test_sources < <(find "$module/src/test/java" -name '*.java' | sort)

javac --release 17 -Xlint:all -Werror -d "$build/main" "${main_sources[@]}"
javac --release 17 -Xlint:all -Werror -cp "$build/main:$junit" -d "$build/test" "${test_sources[@]}"
cp -R "$module/src/test/resources/." "$build/test/"

# Every public class whose name ends in Test, as a fully qualified name.
mapfile -t classes < <(cd "$module/src/test/java" && find . -name '*Test.java' | sort \
    | sed -e 's|^\./||' -e 's|\.java$||' -e 's|/|.|g')
[ "${#classes[@]}" -gt 0 ] || { echo "no test classes found" >&2; exit 1; }

log="$build/junit.log"
status=0
java -cp "$build/main:$build/test:$junit:$hamcrest" org.junit.runner.JUnitCore "${classes[@]}" \
    | tee "$log" || status=$?

# JUnit's own summary is "OK (N tests)" or "Tests run: N,  Failures: F"; repeat it in the
# plain form CI logs are read for.
if ok=$(grep -oE '^OK \([0-9]+ tests?\)' "$log"); then
    echo "imagecore: $(grep -oE '[0-9]+' <<<"$ok") passed, 0 failed"
elif summary=$(grep -E '^Tests run: [0-9]+, +Failures: [0-9]+' "$log"); then
    run=$(sed -E 's/^Tests run: ([0-9]+).*/\1/' <<<"$summary")
    failed=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$summary")
    echo "imagecore: $((run - failed)) passed, $failed failed"
    [ "$status" -ne 0 ] || status=1
fi
exit "$status"

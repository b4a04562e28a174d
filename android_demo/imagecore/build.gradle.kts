// Plain Java, no Android dependency: unit-tested on the JVM with `./gradlew :imagecore:test`,
// or without Gradle by .ci/java_tests.sh at the repository root.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

dependencies {
    testImplementation(libs.junit)
}

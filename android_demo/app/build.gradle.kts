plugins {
    alias(libs.plugins.android.application)
}

android {
    namespace = "org.lmfnedge.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.lmfnedge.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        ndk {
            // The ExecuTorch AAR ships these two ABIs only.
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    androidResources {
        // Keep the program uncompressed in the APK so copying it out is a plain stream copy.
        noCompress.add("pte")
    }
}

dependencies {
    implementation(project(":imagecore"))
    if (providers.gradleProperty("useLocalAar").orNull == "true") {
        implementation(files("libs/executorch.aar"))
        implementation(libs.fbjni)
        implementation(libs.soloader)
    } else {
        implementation(libs.executorch.android)
    }
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.activity)

    androidTestImplementation(libs.androidx.test.ext.junit)
    androidTestImplementation(libs.androidx.test.runner)
    androidTestImplementation(libs.junit)
}

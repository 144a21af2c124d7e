from twisted.application.service import ServiceMaker

clsd = ServiceMaker(
    "clsd", "clsd.tap", "CLSD high-availability cluster daemon.", "clsd"
)

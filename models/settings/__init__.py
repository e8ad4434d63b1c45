"""Settings: one typed, validated object built once from TOML + environment.

`Settings` is the whole tree, one field per TOML table; its sections are typed in
`models.settings.sections` (the edges'), `models.settings.messaging` (the scheduler's),
`models.occasions` and `models.rules`. `models.settings.load.load_settings()` is the only
entry point. Nothing reads configuration at import time; the composition root
(`bot.cli`) builds the settings and passes them in.

Sources, later wins: built-in defaults (the embedded default of CONTRACT.md),
the TOML file, then `MEMBERBOT_<SECTION>_<KEY>` environment variables (nested
tables joined with `_`, lists and tables as JSON).
"""

from __future__ import annotations

from pydantic import Field

from models.occasions import OccasionSettings
from models.rules import LoyaltyRules, OwnershipRules, PointsRules, RewardRules, TierRules
from models.settings.messaging import (
    GreetingSettings,
    MessagingSettings,
    OutboxSettings,
    SchedulerSettings,
)
from models.settings.sections import (
    ApiSettings,
    BrandSettings,
    DatabaseSettings,
    KeywordSettings,
    LoggingSettings,
    MetricsSettings,
    Section,
    ServerSettings,
    SmsSettings,
    StaffSettings,
    StoreSettings,
    WeChatSettings,
)


class Settings(Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    brand: BrandSettings = Field(default_factory=BrandSettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    staff: StaffSettings = Field(default_factory=StaffSettings)
    stores: StoreSettings = Field(default_factory=StoreSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    messaging: MessagingSettings = Field(default_factory=MessagingSettings)
    keywords: KeywordSettings = Field(default_factory=KeywordSettings)
    occasions: OccasionSettings = Field(default_factory=OccasionSettings)
    points: PointsRules = Field(default_factory=PointsRules)
    tiers: TierRules = Field(default_factory=TierRules)
    rewards: RewardRules = Field(default_factory=RewardRules)
    ownership: OwnershipRules = Field(default_factory=OwnershipRules)
    greetings: GreetingSettings = Field(default_factory=GreetingSettings)

    @property
    def loyalty(self) -> LoyaltyRules:
        return LoyaltyRules(
            points=self.points, tiers=self.tiers, rewards=self.rewards, ownership=self.ownership
        )

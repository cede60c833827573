import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { CacheModuleOptions } from './cache-module.options.js';

/** Injection token of the resolved CacheModule options (CacheInterceptor reads them). */
export const CACHE_MODULE_OPTIONS = Symbol('nest-cache:module-options');

export const { ConfigurableModuleClass, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } =
  new ConfigurableModuleBuilder<CacheModuleOptions>({ optionsInjectionToken: CACHE_MODULE_OPTIONS })
    .setClassMethodName('forRoot')
    .setFactoryMethodName('createCacheOptions')
    .setExtras({ isGlobal: false }, (definition, { isGlobal }) => ({
      ...definition,
      global: isGlobal,
      // CacheInterceptor, in whichever module it is used, reads the options too.
      exports: [...(definition.exports ?? []), CACHE_MODULE_OPTIONS],
    }))
    .build();

/** What a `useClass` / `useExisting` options provider of forRootAsync implements. */
export interface CacheOptionsFactory {
  createCacheOptions(): CacheModuleOptions | Promise<CacheModuleOptions>;
}
